"""The torch-free half of the metal-cluster network (issue 18): its config, and the network evaluated in NumPy.

The cluster network (:class:`~qdots_bluesky.models.cluster_network.ClusterNet`, ``"architecture": "cluster-cnn"``)
reads two channels on a fixed log-spaced Q grid of ``n_points`` (1/A; the training grid is
``saxs_waxs_q(0.02, 15, n_points)``): channel 0 asinh(Y / median of the measured Y) with masked points at 0,
channel 1 the mask (1 measured, 0 masked), as ``sim.learning.metal_augment.network_input`` makes them.

Two branches read the same input: the SAXS branch the points ``[0, saxs_stop)`` (low Q, at full resolution of the
grid: the fringe positions and the Guinier region fix the size), the WAXS branch the points
``[waxs_start, n_points)`` (the Bragg and diffuse peaks fix the structure). In each branch the value channel is
centred on its mean over the branch's measured points (so the scale of the median does not depend on which
detector measured: an intensity scale independent of the mask), and three channels (centred value, mask, a
coordinate linear in ln Q from -1 to 1) go through strided convolutions (kernel ``kernel``, stride 2, padding
kernel // 2, no bias) each with BatchNorm and ReLU, then a flatten (the fixed grid gives every position a meaning)
and a dense layer of ``hidden`` units with ReLU. Heads:

- ``family_logits`` (B, F): from the WAXS branch only (SAXS carries almost no shape information, and a SAXS
  fingerprint of the training clusters does not transfer to held-out ones);
- ``continuous`` (B, 2K): from both branches (a dense layer of ``hidden`` units with ReLU on the concatenated
  features): K standardized means then K log standard deviations (units of ``continuous_scales`` around
  ``continuous_offsets``) of ``continuous_targets`` (ln of the number-weighted mean diameter in nm, ln of the
  volume-weighted mean diameter in nm, the dispersion = relative standard deviation of the number distribution);
- ``presence_logit`` (B,): logit of "clusters scatter in this pattern" (trained against blanks);
- ``features`` (B, 2 hidden): the two branches' dense features, concatenated (for out-of-distribution statistics).

:class:`NumpyClusterNet` evaluates a trained network (eval mode: BatchNorm as an affine map) from its state dict with
NumPy alone, to ~1e-5 of PyTorch.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np

#: Families of metal clusters in the order of ``sim.physics.metal_clusters.FAMILIES``.
CLUSTER_FAMILIES = ("icosahedron", "decahedron", "octahedron", "truncated_octahedron", "cuboctahedron", "sphere")
#: Quantities of the continuous head, in order.
CLUSTER_CONTINUOUS_TARGETS = ("log_mean_diameter_nm", "log_volume_diameter_nm", "dispersion")
#: Bounds of the continuous head's log standard deviations (units of ``continuous_scales``), as models/engine.py.
LOG_SIGMA_BOUNDS = (-7.0, 3.0)
#: BatchNorm epsilon (PyTorch's default).
BN_EPS = 1e-5
BRANCHES = ("saxs", "waxs")

DEFAULT_CLUSTER_CONFIG: dict[str, Any] = {
    "architecture": "cluster-cnn",
    "n_points": 1024,
    "families": list(CLUSTER_FAMILIES),
    "continuous_targets": list(CLUSTER_CONTINUOUS_TARGETS),
    "continuous_offsets": [1.15, 1.2, 0.15],
    "continuous_scales": [0.6, 0.6, 0.1],
    # SAXS branch: grid points [0, saxs_stop) (Q 0.02-1.0 1/A on the 1024-point training grid); WAXS branch:
    # [waxs_start, n_points) (Q 0.5-15 1/A)
    "saxs_stop": 605,
    "waxs_start": 498,
    "widths": [16, 24, 32, 48, 64, 64],
    "kernel": 7,
    "hidden": 96,
}


def default_cluster_config(**overrides: Any) -> dict[str, Any]:
    """A copy of :data:`DEFAULT_CLUSTER_CONFIG` with ``overrides`` applied and checked."""
    cfg = copy.deepcopy(DEFAULT_CLUSTER_CONFIG)
    cfg.update(copy.deepcopy(overrides))
    return check_cluster_config(cfg)


def conv_lengths(length: int, n_layers: int) -> list[int]:
    """Lengths after each strided convolution (stride 2, odd kernel, padding kernel // 2) of ``length`` points."""
    out = []
    for _ in range(n_layers):
        length = (length - 1) // 2 + 1
        out.append(length)
    return out


def branch_ranges(cfg: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Grid points (start, stop) each branch reads."""
    return {"saxs": (0, int(cfg["saxs_stop"])), "waxs": (int(cfg["waxs_start"]), int(cfg["n_points"]))}


def check_cluster_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a cluster-network config (as stored in a bundle); returns a normalised plain dict.

    Raises ValueError (one line) naming what is wrong and what is accepted.
    """
    if not isinstance(cfg, Mapping):
        raise ValueError(f"cluster network config is a {type(cfg).__name__}; accepted: a dict")
    cfg = dict(copy.deepcopy(dict(cfg)))
    keys = set(DEFAULT_CLUSTER_CONFIG)
    if set(cfg) != keys:
        raise ValueError(f"cluster network config keys: unknown {sorted(set(cfg) - keys)}, missing "
                         f"{sorted(keys - set(cfg))}; accepted: exactly {sorted(keys)}")
    if cfg["architecture"] != "cluster-cnn":
        raise ValueError(f"architecture {cfg['architecture']!r}; accepted: 'cluster-cnn'")
    try:
        ints = {k: int(cfg[k]) for k in ("n_points", "saxs_stop", "waxs_start", "kernel", "hidden")}
        widths = [int(w) for w in cfg["widths"]]
        offsets = [float(v) for v in cfg["continuous_offsets"]]
        scales = [float(v) for v in cfg["continuous_scales"]]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cluster network config has a non-numeric entry ({exc}); accepted: integers for n_points, "
                         "saxs_stop, waxs_start, kernel, hidden, widths; numbers for continuous_offsets/scales") from None
    if any(float(cfg[k]) != ints[k] for k in ints):
        raise ValueError(f"cluster network config {ints}; accepted: whole numbers")
    families = cfg["families"]
    if (not isinstance(families, (list, tuple)) or len(families) < 2 or len(set(families)) != len(families)
            or not all(isinstance(f, str) and f for f in families)):
        raise ValueError(f"families {families!r}; accepted: a list of at least 2 distinct family names")
    targets = list(cfg["continuous_targets"]) if isinstance(cfg["continuous_targets"], (list, tuple)) else None
    if targets != list(CLUSTER_CONTINUOUS_TARGETS):
        raise ValueError(f"continuous_targets {cfg['continuous_targets']!r}; accepted: {list(CLUSTER_CONTINUOUS_TARGETS)}")
    k = len(targets)
    if len(offsets) != k or len(scales) != k or min(scales) <= 0 or not np.all(np.isfinite(offsets + scales)):
        raise ValueError(f"continuous_offsets {offsets} and continuous_scales {scales}; accepted: {k} finite numbers "
                         "each, scales > 0")
    if not widths or min(widths) < 1 or ints["kernel"] < 1 or ints["kernel"] % 2 == 0 or ints["hidden"] < 1:
        raise ValueError(f"widths {widths}, kernel {ints['kernel']}, hidden {ints['hidden']}; accepted: positive "
                         "widths (at least one layer), an odd kernel >= 1, hidden >= 1")
    n, s, w = ints["n_points"], ints["saxs_stop"], ints["waxs_start"]
    if not (1 <= s <= n and 0 <= w < n):
        raise ValueError(f"n_points {n}, saxs_stop {s}, waxs_start {w}; accepted: 1 <= saxs_stop <= n_points and "
                         "0 <= waxs_start < n_points")
    cfg.update(ints, widths=widths, continuous_offsets=offsets, continuous_scales=scales, families=list(families),
               continuous_targets=targets)
    return cfg


def cluster_state_dict_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors of a ClusterNet state dict for ``cfg`` (without ``num_batches_tracked``)."""
    cfg = check_cluster_config(cfg)
    shapes: dict[str, tuple[int, ...]] = {}
    widths, k, hidden = cfg["widths"], cfg["kernel"], cfg["hidden"]
    for name, (start, stop) in branch_ranges(cfg).items():
        c_in = 3
        for i, width in enumerate(widths):
            shapes[f"{name}.convs.{i}.weight"] = (width, c_in, k)
            for t in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{name}.norms.{i}.{t}"] = (width,)
            c_in = width
        flat = widths[-1] * conv_lengths(stop - start, len(widths))[-1]
        shapes[f"{name}.fc.weight"] = (hidden, flat)
        shapes[f"{name}.fc.bias"] = (hidden,)
    n_k = len(cfg["continuous_targets"])
    for name, (n_out, n_in) in {"family_head": (len(cfg["families"]), hidden), "trunk": (hidden, 2 * hidden),
                                "continuous_head": (2 * n_k, hidden), "presence_head": (1, hidden)}.items():
        shapes[f"{name}.weight"] = (n_out, n_in)
        shapes[f"{name}.bias"] = (n_out,)
    return shapes


def cluster_continuous_estimates(raw: np.ndarray, cfg: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations (rows x K, float64, in the targets' own units: ln nm, ln nm, relative) from the
    continuous head's raw output (rows x 2K: standardized means, then log standard deviations bounded to
    :data:`LOG_SIGMA_BOUNDS`)."""
    raw = np.asarray(raw, dtype=np.float64)
    k = len(cfg["continuous_targets"])
    if raw.ndim != 2 or raw.shape[1] != 2 * k:
        raise ValueError(f"raw continuous output of shape {raw.shape}; accepted: (rows, {2 * k})")
    offsets = np.asarray(cfg["continuous_offsets"], dtype=np.float64)
    scales = np.asarray(cfg["continuous_scales"], dtype=np.float64)
    return offsets + scales * raw[:, :k], scales * np.exp(np.clip(raw[:, k:], *LOG_SIGMA_BOUNDS))


def branch_input(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The three channels (B, 3, stop - start) a branch reads from the network input ``x`` (B, 2, n): the value
    centred on its mean over the measured points (0 where masked), the mask, and a coordinate from -1 to 1."""
    v, m = x[:, 0, start:stop], x[:, 1, start:stop]
    centre = (v * m).sum(axis=1, keepdims=True) / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    coord = np.broadcast_to(np.linspace(-1.0, 1.0, stop - start, dtype=np.float32), v.shape)
    return np.stack([(v - centre) * m, m, coord], axis=1).astype(np.float32)


def _conv_stride2(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Conv1d (no bias) of h (B, C, L) with w (O, C, k), stride 2, padding k // 2."""
    k = w.shape[2]
    p = k // 2
    hp = np.pad(h, ((0, 0), (0, 0), (p, p)))
    length = (h.shape[2] - 1) // 2 + 1
    win = np.lib.stride_tricks.sliding_window_view(hp, k, axis=2)[:, :, : 2 * length - 1 : 2, :]  # (B, C, L, k)
    b, c = h.shape[:2]
    cols = win.transpose(0, 2, 1, 3).reshape(b * length, c * k)
    return (cols @ w.reshape(w.shape[0], c * k).T).reshape(b, length, w.shape[0]).transpose(0, 2, 1)


class NumpyClusterNet:
    """A trained ClusterNet (eval mode) in NumPy: ``NumpyClusterNet(cfg, weights)`` with ``weights`` the state dict
    as arrays (names and shapes of :func:`cluster_state_dict_shapes`); calling it on float32 inputs (B, 2, n_points)
    gives the dict of outputs of the module docstring as float32 arrays."""

    def __init__(self, cfg: Mapping[str, Any], weights: Mapping[str, Any]):
        self.config = check_cluster_config(cfg)
        expected = cluster_state_dict_shapes(self.config)
        got = {k: tuple(np.shape(v)) for k, v in weights.items() if not k.endswith("num_batches_tracked")}
        if got != expected:
            bad = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
            raise ValueError(f"weights do not fit the cluster network: {len(bad)} tensors differ (first {bad[:3]}); "
                             "accepted: the names and shapes of cluster_state_dict_shapes(config)")
        w = {k: np.asarray(weights[k], dtype=np.float32) for k in expected}
        self._layers: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        for name in BRANCHES:
            layers = []
            for i in range(len(self.config["widths"])):
                pre = f"{name}.norms.{i}."
                scale = w[pre + "weight"] / np.sqrt(w[pre + "running_var"] + BN_EPS)
                layers.append((w[f"{name}.convs.{i}.weight"], scale, w[pre + "bias"] - w[pre + "running_mean"] * scale))
            self._layers[name] = layers
        self._w = w

    def _dense(self, name: str, h: np.ndarray) -> np.ndarray:
        return h @ self._w[name + ".weight"].T + self._w[name + ".bias"]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        n = self.config["n_points"]
        if x.ndim != 3 or x.shape[1:] != (2, n):
            raise ValueError(f"input of shape {x.shape}; accepted: (B, 2, {n}) float32 (asinh intensity, mask)")
        feats = {}
        for name, (start, stop) in branch_ranges(self.config).items():
            h = branch_input(x, start, stop)
            for weight, scale, shift in self._layers[name]:
                h = np.maximum(_conv_stride2(h, weight) * scale[None, :, None] + shift[None, :, None], 0.0)
            feats[name] = np.maximum(self._dense(f"{name}.fc", h.reshape(h.shape[0], -1)), 0.0)
        features = np.concatenate([feats["saxs"], feats["waxs"]], axis=1)
        trunk = np.maximum(self._dense("trunk", features), 0.0)
        out = {"family_logits": self._dense("family_head", feats["waxs"]),
               "continuous": self._dense("continuous_head", trunk),
               "presence_logit": self._dense("presence_head", trunk)[:, 0], "features": features}
        return {k: v.astype(np.float32) for k, v in out.items()}
