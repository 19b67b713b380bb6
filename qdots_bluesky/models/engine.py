"""The torch-free half of the network: its config, and the same network evaluated in NumPy.

:class:`NumpyQDotsNet` runs a trained :class:`~qdots_bluesky.models.network.QDotsNet` (eval mode)
from its state dict with plain NumPy: because every convolution has kernel = stride, each
layer is a reshape and one float32 matrix product, and BatchNorm folds into the convolution.
It gives the same outputs as PyTorch (to float32 rounding) and lets ``qdots predict`` and
other short-lived processes size patterns without importing PyTorch (~1.5-2 s of start-up).
It also computes Grad-CAM maps on any conv layer (on the last one, with the linear heads on
globally pooled features, Grad-CAM equals the classic CAM).
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np

#: Default size classes: mean diameters 2.0 to 10.0 nm in 0.5 nm steps.
SIZE_CLASSES_NM = [round(2.0 + 0.5 * i, 2) for i in range(17)]
#: Default dispersion classes: relative standard deviation of the log-normal.
DISPERSION_CLASSES = [0.05, 0.10, 0.15, 0.20]
#: Accepted values of ``config["input_transform"]``.
INPUT_TRANSFORMS = ("center", "sqrt", "log", "none")
#: BatchNorm epsilon (PyTorch's default), used by both implementations.
BN_EPS = 1e-5
#: The quantities of the continuous head, in order: ln of the number-weighted mean diameter (nm), ln of the
#: volume-weighted mean diameter (nm), the dispersion (relative standard deviation) and the lattice strain (fraction).
CONTINUOUS_TARGETS = ("log_mean_diameter_nm", "log_volume_diameter_nm", "dispersion", "strain")
#: Bounds of the continuous head's log standard deviations (in units of ``continuous_scales``).
LOG_SIGMA_BOUNDS = (-7.0, 3.0)

DEFAULT_CONFIG_CONTINUOUS_OFFSETS = [1.6, 1.65, 0.165, 0.0]
DEFAULT_CONFIG_CONTINUOUS_SCALES = [0.5, 0.5, 0.08, 0.006]
DEFAULT_CONFIG: dict[str, Any] = {
    "architecture": "QDotsNet",
    "n_points": 5004,
    "filters": [32, 32, 32, 32, 32],
    "kernels": [10, 5, 4, 3, 2],
    "batch_norm": True,
    "input_transform": "center",
    "dropout": 0.0,
    "size_classes_nm": SIZE_CLASSES_NM,
    "dispersion_classes": DISPERSION_CLASSES,
    "regression_offset_nm": 6.0,
    "regression_scale_nm": 4.0,
    "presence_head": True,
    # continuous head: for each of CONTINUOUS_TARGETS a mean and a log standard deviation, both in units of
    # continuous_scales around continuous_offsets (so the head learns O(1) numbers)
    "continuous_head": False,
    "continuous_offsets": DEFAULT_CONFIG_CONTINUOUS_OFFSETS,
    "continuous_scales": DEFAULT_CONFIG_CONTINUOUS_SCALES,
    # a known instrument resolution as a second input (instrument_condition): the pooled features are scaled and
    # shifted per channel (FiLM, linear in the condition, no bias, so an unknown instrument leaves them as they are);
    # instrument_fwhm_max_q is the largest Gaussian / Lorentzian FWHM (1/A) the network was trained with
    "instrument_input": False,
    "instrument_fwhm_max_q": 0.005,
}
#: Config keys that bundles written before the key existed may lack, and the value that reproduces them.
_LEGACY_DEFAULTS: dict[str, Any] = {"presence_head": False, "continuous_head": False,
                                    "continuous_offsets": DEFAULT_CONFIG_CONTINUOUS_OFFSETS,
                                    "continuous_scales": DEFAULT_CONFIG_CONTINUOUS_SCALES,
                                    "instrument_input": False, "instrument_fwhm_max_q": 0.005}
#: Length of the instrument condition: (known, Gaussian FWHM, Lorentzian FWHM), the widths over the largest trained.
INSTRUMENT_CONDITION_SIZE = 3


def default_config(**overrides: Any) -> dict[str, Any]:
    """A copy of :data:`DEFAULT_CONFIG` with ``overrides`` applied and checked."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    cfg.update(copy.deepcopy(overrides))
    return check_config(cfg)


def check_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a network config (as stored in a bundle); returns a normalised plain dict.

    Raises ValueError naming the bad key and what is accepted.
    """
    if not isinstance(cfg, Mapping):
        raise ValueError(f"network config must be a dict, not {type(cfg).__name__}")
    cfg = dict(cfg)
    for key, value in _LEGACY_DEFAULTS.items():
        cfg.setdefault(key, value)
    unknown = set(cfg) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"network config has unknown keys {sorted(unknown)}; accepted: {sorted(DEFAULT_CONFIG)}")
    missing = set(DEFAULT_CONFIG) - set(cfg)
    if missing:
        raise ValueError(f"network config lacks keys {sorted(missing)}")
    if cfg["architecture"] != "QDotsNet":
        raise ValueError(f"network architecture {cfg['architecture']!r} is not known; accepted: 'QDotsNet'")
    try:
        filters = [int(f) for f in cfg["filters"]]
        kernels = [int(k) for k in cfg["kernels"]]
        n_points = int(cfg["n_points"])
        sizes = [float(s) for s in cfg["size_classes_nm"]]
        disps = [float(d) for d in cfg["dispersion_classes"]]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"network config has a non-numeric entry ({exc})") from None
    if not filters or len(filters) != len(kernels) or min(filters) < 1 or min(kernels) < 1:
        raise ValueError(f"filters {filters} and kernels {kernels} must be non-empty lists of positive integers of equal length")
    seen = n_points
    for k in kernels:
        seen //= k
    if seen < 1:
        raise ValueError(f"n_points={n_points} is too short for kernels {kernels}; accepted: at least {int(np.prod(kernels))}")
    if cfg["input_transform"] not in INPUT_TRANSFORMS:
        raise ValueError(f"input_transform {cfg['input_transform']!r} is not known; accepted: {INPUT_TRANSFORMS}")
    for name, values in (("size_classes_nm", sizes), ("dispersion_classes", disps)):
        if len(values) < 2 or any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"{name} {values} must hold at least two strictly increasing values")
    try:
        offsets = [float(v) for v in cfg["continuous_offsets"]]
        scales = [float(v) for v in cfg["continuous_scales"]]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"continuous_offsets/continuous_scales have a non-numeric entry ({exc})") from None
    n_cont = len(CONTINUOUS_TARGETS)
    if len(offsets) != n_cont or len(scales) != n_cont or min(scales) <= 0:
        raise ValueError(f"continuous_offsets {offsets} and continuous_scales {scales}; accepted: {n_cont} numbers each "
                         f"(one per {', '.join(CONTINUOUS_TARGETS)}), scales > 0")
    if not 0.0 <= float(cfg["dropout"]) < 1.0:
        raise ValueError(f"dropout {cfg['dropout']} must be in [0, 1)")
    if not float(cfg["instrument_fwhm_max_q"]) > 0:
        raise ValueError(f"instrument_fwhm_max_q {cfg['instrument_fwhm_max_q']} must be > 0 (1/A)")
    cfg.update(filters=filters, kernels=kernels, n_points=n_points, size_classes_nm=sizes, dispersion_classes=disps,
               batch_norm=bool(cfg["batch_norm"]), dropout=float(cfg["dropout"]), presence_head=bool(cfg["presence_head"]),
               regression_offset_nm=float(cfg["regression_offset_nm"]), continuous_head=bool(cfg["continuous_head"]),
               continuous_offsets=offsets, continuous_scales=scales,
               regression_scale_nm=float(cfg["regression_scale_nm"]), instrument_input=bool(cfg["instrument_input"]),
               instrument_fwhm_max_q=float(cfg["instrument_fwhm_max_q"]))
    return cfg


def instrument_condition(fwhm_q: Any, n: int, cfg: Mapping[str, Any]) -> np.ndarray | None:
    """The network's instrument input for ``n`` patterns: None for a network without it; rows of zeros where the
    instrument is unknown (``fwhm_q`` None); else (1, Gaussian, Lorentzian FWHM / ``instrument_fwhm_max_q``) from
    ``fwhm_q`` = (Gaussian, Lorentzian) FWHM in 1/A of a Voigt resolution of constant width in Q.

    Raises ValueError for widths that are negative, not finite or wider than the network was trained with, and for
    a known instrument given to a network that has no instrument input.
    """
    if not cfg.get("instrument_input"):
        if fwhm_q is not None:
            raise ValueError("this model was not trained with a known instrument resolution; accepted: no instrument "
                             "FWHM, or a model trained with known_instrument_share > 0")
        return None
    out = np.zeros((int(n), INSTRUMENT_CONDITION_SIZE), dtype=np.float32)
    if fwhm_q is None:
        return out
    g_l = check_instrument_fwhm(fwhm_q, cfg)
    out[:] = (1.0, g_l[0] / cfg["instrument_fwhm_max_q"], g_l[1] / cfg["instrument_fwhm_max_q"])
    return out


def check_instrument_fwhm(fwhm_q: Any, cfg: Mapping[str, Any]) -> tuple[float, float]:
    """(Gaussian, Lorentzian) FWHM in 1/A, checked against the range a network was trained with."""
    top = float(cfg["instrument_fwhm_max_q"])
    try:
        g, l_ = (float(v) for v in fwhm_q)
    except (TypeError, ValueError):
        raise ValueError(f"instrument FWHM {fwhm_q!r}; accepted: a (Gaussian, Lorentzian) pair of FWHMs in 1/A, "
                         f"each 0 to {top:g}") from None
    if not (np.isfinite(g) and np.isfinite(l_) and 0.0 <= g <= top and 0.0 <= l_ <= top):
        raise ValueError(f"instrument FWHM ({g:g}, {l_:g}) 1/A; accepted: Gaussian and Lorentzian FWHM each 0 to "
                         f"{top:g} 1/A (the range the model was trained with)")
    return g, l_


def receptive_fields(cfg: Mapping[str, Any]) -> list[tuple[int, int]]:
    """For each conv layer: (length of its output, input points per output position)."""
    out, length, span = [], int(cfg["n_points"]), 1
    for k in cfg["kernels"]:
        length //= int(k)
        span *= int(k)
        out.append((length, span))
    return out


def head_sizes(cfg: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(name, outputs) of the linear heads on the pooled features, in state-dict order."""
    heads = [("size_head", len(cfg["size_classes_nm"])), ("dispersion_head", len(cfg["dispersion_classes"])),
             ("regression_head", 1)]
    if cfg.get("presence_head"):
        heads.append(("presence_head", 1))
    if cfg.get("continuous_head"):
        heads.append(("continuous_head", 2 * len(CONTINUOUS_TARGETS)))
    return heads


#: Output name of each head.
HEAD_OUTPUTS = {"size_head": "size_logits", "dispersion_head": "dispersion_logits", "regression_head": "size_nm",
                "presence_head": "nanocrystal_logit", "continuous_head": "continuous"}


def continuous_estimates(raw: np.ndarray, cfg: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations (rows x CONTINUOUS_TARGETS, float64, in the targets' own units) from the
    continuous head's raw output (rows x 2 * targets: standardized means, then log standard deviations)."""
    raw = np.asarray(raw, dtype=np.float64)
    k = len(CONTINUOUS_TARGETS)
    offsets = np.asarray(cfg["continuous_offsets"], dtype=np.float64)
    scales = np.asarray(cfg["continuous_scales"], dtype=np.float64)
    mean = offsets + scales * raw[:, :k]
    std = scales * np.exp(np.clip(raw[:, k:], *LOG_SIGMA_BOUNDS))
    return mean, std


def state_dict_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors of a QDotsNet state dict for ``cfg`` as stored in a bundle.

    BatchNorm's ``num_batches_tracked`` counters (training bookkeeping) are not stored.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    in_ch = 1
    for i, (f, k) in enumerate(zip(cfg["filters"], cfg["kernels"])):
        shapes[f"convs.{i}.weight"] = (f, in_ch, k)
        shapes[f"convs.{i}.bias"] = (f,)
        if cfg["batch_norm"]:
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"norms.{i}.{name}"] = (f,)
        in_ch = f
    if cfg.get("instrument_input"):
        shapes["instrument_film.weight"] = (2 * in_ch, INSTRUMENT_CONDITION_SIZE)
    for head, n_out in head_sizes(cfg):
        shapes[f"{head}.weight"] = (n_out, in_ch)
        shapes[f"{head}.bias"] = (n_out,)
    return shapes


class NumpyQDotsNet:
    """A QDotsNet in eval mode evaluated with NumPy (float32); see the module docstring.

    ``state``: the QDotsNet state dict as NumPy arrays (names and shapes as in :func:`state_dict_shapes`).
    """

    def __init__(self, config: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> None:
        self.config = check_config(config)
        cfg = self.config
        missing = [k for k in state_dict_shapes(cfg) if k not in state]
        if missing:
            raise ValueError(f"weights lack {len(missing)} tensors, e.g. {missing[:3]}")
        self.layers: list[tuple[int, np.ndarray, np.ndarray]] = []  # (kernel, W (k*C_in, C_out), bias)
        in_ch = 1
        for i, (f, k) in enumerate(zip(cfg["filters"], cfg["kernels"])):
            w = np.asarray(state[f"convs.{i}.weight"], dtype=np.float64)
            b = np.asarray(state[f"convs.{i}.bias"], dtype=np.float64)
            if w.shape != (f, in_ch, k) or b.shape != (f,):
                raise ValueError(f"convs.{i} has weight shape {w.shape}, bias {b.shape}; expected {(f, in_ch, k)}, {(f,)}")
            if cfg["batch_norm"]:
                gamma = np.asarray(state[f"norms.{i}.weight"], dtype=np.float64)
                beta = np.asarray(state[f"norms.{i}.bias"], dtype=np.float64)
                mean = np.asarray(state[f"norms.{i}.running_mean"], dtype=np.float64)
                var = np.asarray(state[f"norms.{i}.running_var"], dtype=np.float64)
                s = gamma / np.sqrt(var + BN_EPS)
                w = w * s[:, None, None]
                b = (b - mean) * s + beta
            # (C_out, C_in, k) -> rows ordered (k, C_in) to match a (T, k, C_in) window reshape.
            wmat = np.ascontiguousarray(w.transpose(2, 1, 0).reshape(k * in_ch, f), dtype=np.float32)
            self.layers.append((k, wmat, b.astype(np.float32)))
            in_ch = f
        self.heads = {}
        for name, n_out in head_sizes(cfg):
            w = np.asarray(state[f"{name}.weight"], dtype=np.float32)
            b = np.asarray(state[f"{name}.bias"], dtype=np.float32)
            if w.shape != (n_out, in_ch) or b.shape != (n_out,):
                raise ValueError(f"{name} has weight shape {w.shape}, bias {b.shape}; expected {(n_out, in_ch)}, {(n_out,)}")
            self.heads[name] = (np.ascontiguousarray(w.T), b)
        self.film = (np.ascontiguousarray(np.asarray(state["instrument_film.weight"], dtype=np.float32).T)
                     if cfg["instrument_input"] else None)  # (3, 2C): condition -> (gamma, beta)
        self.fields = receptive_fields(cfg)

    def _film(self, instrument: np.ndarray | None, B: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(scale 1 + gamma, shift beta) per row (B, C) for the instrument condition; None without the input or
        without a condition (unknown: the FiLM of zeros is the identity, as in the torch network)."""
        if self.film is None and instrument is not None:
            raise ValueError("this network has no instrument input; accepted: instrument=None")
        if self.film is None or instrument is None:
            return None
        c = np.asarray(instrument, np.float32)
        if c.shape != (B, INSTRUMENT_CONDITION_SIZE):
            raise ValueError(f"instrument condition has shape {c.shape}; accepted: ({B}, {INSTRUMENT_CONDITION_SIZE})")
        gb = c @ self.film
        n_ch = gb.shape[1] // 2
        return 1.0 + gb[:, :n_ch], gb[:, n_ch:]

    # ----------------------------------------------------------------------------------------
    def _input(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 3 and X.shape[1] == 1:
            X = X[:, 0, :]
        n = self.config["n_points"]
        if X.ndim != 2 or X.shape[1] != n:
            raise ValueError(f"input has shape {X.shape}; accepted: (B, {n}) or (B, 1, {n}) standardized patterns")
        t = self.config["input_transform"]
        if t == "center":
            return X - np.float32(1.0)
        if t == "sqrt":
            return np.float32(2.0) * np.sqrt(np.maximum(X, np.float32(0.0))) - np.float32(2.0)
        if t == "log":
            return np.log(np.maximum(X, np.float32(1e-3)))
        return X

    def _conv_stack(self, X: np.ndarray, keep: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """Activations of the last layer (B, T, C); with ``keep`` also every layer's."""
        B = X.shape[0]
        h = X[:, :, None]  # (B, T, C_in=1)
        acts = []
        for k, wmat, b in self.layers:
            t_out = h.shape[1] // k
            win = h[:, : t_out * k, :].reshape(B * t_out, k * h.shape[2])
            z = win @ wmat
            z += b
            np.maximum(z, 0.0, out=z)
            h = z.reshape(B, t_out, -1)
            if keep:
                acts.append(h)
        return h, acts

    def __call__(self, X: np.ndarray, feature_map: bool = False, instrument: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
        """Outputs as QDotsNet.forward, as float32 NumPy arrays (``feature_map`` (B, C, L) only on request);
        ``instrument``: the condition rows of :func:`instrument_condition` (None: unknown)."""
        x = self._input(X)
        h, _ = self._conv_stack(x)
        features = h.mean(axis=1)
        film = self._film(instrument, x.shape[0])
        z = features if film is None else features * film[0] + film[1]
        out = {}
        for name, (w, b) in self.heads.items():
            out[HEAD_OUTPUTS[name]] = z @ w + b
        out["size_nm"] = (self.config["regression_offset_nm"]
                          + self.config["regression_scale_nm"] * out["size_nm"][:, 0]).astype(np.float32)
        if "nanocrystal_logit" in out:
            out["nanocrystal_logit"] = out["nanocrystal_logit"][:, 0]
        out["features"] = features
        if feature_map:
            out["feature_map"] = np.ascontiguousarray(h.transpose(0, 2, 1))
        return out

    def grad_cam(self, X: np.ndarray, class_index: np.ndarray | None = None, *, target: str = "size",
                 layer: int = -1, instrument: np.ndarray | None = None) -> np.ndarray:
        """Grad-CAM of a class logit on conv ``layer``, upsampled to the input grid: (B, n_points) in [0, 1].

        ``target``: "size" or "dispersion"; ``class_index``: one class per pattern (default: the
        most probable). Each row is divided by its maximum (all zero where no region raises the
        logit). Grid points the network does not see (beyond the last full window) get 0.
        """
        head = {"size": "size_head", "dispersion": "dispersion_head"}.get(target)
        if head is None:
            raise ValueError(f"target {target!r} is not known; accepted: 'size' or 'dispersion'")
        n_layers = len(self.layers)
        if not -n_layers <= layer < n_layers:
            raise ValueError(f"layer {layer} does not exist; accepted: -{n_layers}..{n_layers - 1}")
        layer %= n_layers
        x = self._input(X)
        B = x.shape[0]
        _, acts = self._conv_stack(x, keep=True)
        w_head, b_head = self.heads[head]
        film = self._film(instrument, B)
        scale, shift = film if film is not None else (np.ones((B, w_head.shape[0]), np.float32), 0.0)
        if class_index is None:
            class_index = np.argmax((acts[-1].mean(axis=1) * scale + shift) @ w_head + b_head, axis=1)
        class_index = np.broadcast_to(np.asarray(class_index, dtype=int), (B,))
        n_classes = w_head.shape[1]
        if class_index.min() < 0 or class_index.max() >= n_classes:
            raise ValueError(f"class_index out of range; accepted: 0..{n_classes - 1}")
        # d logit / d A_last = w_c (1 + gamma) / L (global average pooling, FiLM), then back through ReLU and convolutions.
        g = np.repeat((w_head[:, class_index].T * scale / acts[-1].shape[1])[:, None, :], acts[-1].shape[1], axis=1)
        for i in range(n_layers - 1, layer, -1):
            k, wmat, _ = self.layers[i]
            dz = g * (acts[i] > 0)  # (B, T_i, C_out)
            t_i = dz.shape[1]
            c_in = acts[i - 1].shape[2]
            dprev = (dz.reshape(B * t_i, -1) @ wmat.T).reshape(B, t_i * k, c_in)
            g = np.zeros_like(acts[i - 1])
            g[:, : t_i * k, :] = dprev
        a = acts[layer]
        alpha = g.mean(axis=1)  # (B, C)
        cam = np.maximum(np.einsum("btc,bc->bt", a, alpha), 0.0)
        top = cam.max(axis=1, keepdims=True)
        cam = np.divide(cam, top, out=np.zeros_like(cam), where=top > 0)
        length, span = self.fields[layer]
        n = self.config["n_points"]
        out = np.zeros((B, n), dtype=np.float32)
        out[:, : length * span] = np.repeat(cam, span, axis=1)
        return out
