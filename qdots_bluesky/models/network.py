"""The reference all-convolutional network for sizing quantum dots from a standardized pattern.

Architecture (DESIGN.md, "Network"; Allara et al. 2024): the standardized pattern (5004 points
on Q = 1..15 1/A, mean 1) -> an input transform -> five Conv1d layers of 32 filters with
kernel = stride = 10, 5, 4, 3, 2 (non-overlapping windows, no padding, as Keras 'valid'),
each followed by an optional BatchNorm and a ReLU -> global average pooling over Q -> 32
features -> linear heads:

- ``size_logits``: the size classes (default 17 mean diameters 2.0..10.0 nm in 0.5 nm steps);
- ``dispersion_logits``: the dispersion classes (default 0.05, 0.10, 0.15, 0.20);
- ``size_nm``: a regression of the mean diameter, ``regression_offset_nm +
  regression_scale_nm * z`` with ``z`` the linear output (so an untrained head starts near
  the middle of the range and the head learns an O(1) number);
- ``nanocrystal_logit`` (``config["presence_head"]``, default on; bundles written before it have
  none): the logit of "this pattern holds nanocrystal scattering at all", trained against pure
  solvent / background patterns, so a blank is reported as such instead of being sized.

Additions to the reference, both cheap and switchable in ``config``:

- ``input_transform``: "center" (default; x - 1, so the mean-1 pattern is centred on 0 and a flat
  pattern gives a zero input), "sqrt" (2 sqrt(x) - 2, x clipped at 0: Anscombe-like, makes Poisson noise of the
  same size at every Q, and a flat pattern gives zero), "log" (log of x clipped at 1e-3: compresses Bragg
  peaks) or "none";
- ``batch_norm`` (default True): BatchNorm1d between each convolution and its ReLU; in eval mode
  it is a per-channel affine map (the NumPy engine folds it into the convolution).
- ``dropout`` (default 0): dropout on the pooled features before the heads, in training only.

The convolutions are Conv1d modules (weights (C_out, C_in, k), as saved in bundles) evaluated as a
reshape and one matrix product per layer, exactly conv1d with stride = kernel and no padding but
2-3x faster on a CPU. The heads are linear on the pooled features, so the class activation map on the last feature map
is exact: logit_c = b_c + mean_t sum_k w_ck A_k(t).

With the default config the network has 15 895 parameters (14 816 convolution, 320 BatchNorm,
759 heads). The shipped model is wider after the first layer (``filters`` 32, 64, 96, 128, 128) and
reads windows of 20 points in its first layer (``kernels`` 20, 5, 4, 3, 2; both the training
defaults: 109 399 parameters), which is more accurate on dilute and coarse data and trains
faster (every later layer runs on half as many positions). Windows that do not fill a stride are
dropped, as in the reference: with either kernels the five layers see the first 4800 of the 5004
points (Q 1.0 to ~14.43 1/A).
"""
from __future__ import annotations

import copy
import functools
from typing import Any, Mapping

import torch
from torch import nn

from .engine import (  # noqa: F401  (re-exported: the config lives in the torch-free module)
    BN_EPS,
    CONTINUOUS_TARGETS,
    DEFAULT_CONFIG,
    DISPERSION_CLASSES,
    INPUT_TRANSFORMS,
    INSTRUMENT_CONDITION_SIZE,
    SIZE_CLASSES_NM,
    check_config,
    default_config,
    head_sizes,
    receptive_fields,
)

class QDotsNet(nn.Module):
    """The reference 1D CNN with size, dispersion and regression heads; see the module docstring.

    ``QDotsNet(config=None, **overrides)``: ``config`` is a plain JSON-able dict (see
    :data:`DEFAULT_CONFIG`), stored as ``self.config`` and in model bundles.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = dict(copy.deepcopy(DEFAULT_CONFIG) if config is None else copy.deepcopy(dict(config)))
        cfg.update(copy.deepcopy(overrides))
        self.config: dict[str, Any] = check_config(cfg)
        c = self.config
        convs, norms = [], []
        in_ch = 1
        for f, k in zip(c["filters"], c["kernels"]):
            convs.append(nn.Conv1d(in_ch, f, kernel_size=k, stride=k))
            norms.append(nn.BatchNorm1d(f, eps=BN_EPS) if c["batch_norm"] else nn.Identity())
            in_ch = f
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.dropout = nn.Dropout(c["dropout"])
        self.size_head = nn.Linear(in_ch, len(c["size_classes_nm"]))
        self.dispersion_head = nn.Linear(in_ch, len(c["dispersion_classes"]))
        self.regression_head = nn.Linear(in_ch, 1)
        self.presence_head = nn.Linear(in_ch, 1) if c["presence_head"] else None
        self.continuous_head = nn.Linear(in_ch, 2 * len(CONTINUOUS_TARGETS)) if c["continuous_head"] else None
        self.instrument_film = None
        if c["instrument_input"]:  # zero at the start: the network begins as one that ignores the instrument
            self.instrument_film = nn.Linear(INSTRUMENT_CONDITION_SIZE, 2 * in_ch, bias=False)
            nn.init.zeros_(self.instrument_film.weight)

    @property
    def n_features(self) -> int:
        """Length of the pooled feature vector."""
        return int(self.config["filters"][-1])

    @property
    def size_classes_nm(self) -> list[float]:
        return list(self.config["size_classes_nm"])

    @property
    def dispersion_classes(self) -> list[float]:
        return list(self.config["dispersion_classes"])

    def transform_input(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``config['input_transform']`` to the standardized (mean 1) pattern."""
        t = self.config["input_transform"]
        if t == "center":
            return x - 1.0
        if t == "sqrt":
            return 2.0 * torch.sqrt(torch.clamp(x, min=0.0)) - 2.0
        if t == "log":
            return torch.log(torch.clamp(x, min=1e-3))
        return x

    def forward(self, x: torch.Tensor, instrument: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``x``: (B, n_points) or (B, 1, n_points) standardized patterns; ``instrument``: (B, 3) instrument
        conditions (:func:`~qdots_bluesky.models.engine.instrument_condition`; None: unknown) for a network with
        ``config["instrument_input"]``, which scale and shift the pooled features before the heads (FiLM).

        Returns a dict: ``size_logits`` (B, n_size), ``dispersion_logits`` (B, n_disp),
        ``size_nm`` (B,) regression, ``features`` (B, 32) pooled, ``feature_map`` (B, 32, L) the
        last conv map after ReLU (L = 4 for the default config), and ``nanocrystal_logit`` (B,)
        when the config has the presence head.
        """
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[2] != self.config["n_points"]:
            raise ValueError(
                f"input has shape {tuple(x.shape)}; accepted: (B, {self.config['n_points']}) or "
                f"(B, 1, {self.config['n_points']}) standardized patterns"
            )
        x = x.to(self.convs[0].weight.dtype)
        h = self.transform_input(x[:, 0, :]).unsqueeze(-1)  # channels last: (B, L, C)
        B = h.shape[0]
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            # kernel = stride, no padding: each output position is one window of k positions x C_in channels,
            # so the convolution is a reshape and one matrix product (2-3x faster than conv1d on a CPU).
            k = conv.kernel_size[0]
            length = h.shape[1] // k
            c_in = h.shape[2]
            w = conv.weight.permute(2, 1, 0).reshape(k * c_in, conv.out_channels)
            windows = h[:, : length * k, :].reshape(B * length, k * c_in)
            if i == 0 and isinstance(norm, nn.BatchNorm1d) and norm.training and not windows.requires_grad:
                w_folded, b_folded = _batch_norm_folded_into_first_layer(windows, w, conv.bias, norm)
                z = torch.addmm(b_folded, windows, w_folded)
                h = z.relu_().reshape(B, length, conv.out_channels)
                continue
            z = torch.addmm(conv.bias, windows, w)
            h = norm(z).relu_().reshape(B, length, conv.out_channels)  # BatchNorm over (B*L, C) = over B and L
        h = h.transpose(1, 2)  # (B, C, L) as Conv1d gives it
        features = h.mean(dim=-1)
        z = self.dropout(self._film(features, instrument))
        reg = self.regression_head(z).squeeze(-1)
        out = {
            "size_logits": self.size_head(z),
            "dispersion_logits": self.dispersion_head(z),
            "size_nm": self.config["regression_offset_nm"] + self.config["regression_scale_nm"] * reg,
            "features": features,
            "feature_map": h,
        }
        if self.presence_head is not None:
            out["nanocrystal_logit"] = self.presence_head(z).squeeze(-1)
        if self.continuous_head is not None:
            out["continuous"] = self.continuous_head(z)
        return out


    def _film(self, features: torch.Tensor, instrument: torch.Tensor | None) -> torch.Tensor:
        """The pooled features scaled and shifted per channel by the instrument condition (unchanged without one)."""
        if self.instrument_film is None:
            if instrument is not None:
                raise ValueError("this network has no instrument input; accepted: instrument=None")
            return features
        if instrument is None:
            return features
        c = torch.as_tensor(instrument, dtype=features.dtype, device=features.device)
        if c.shape != (features.shape[0], INSTRUMENT_CONDITION_SIZE):
            raise ValueError(f"instrument condition has shape {tuple(c.shape)}; accepted: "
                             f"({features.shape[0]}, {INSTRUMENT_CONDITION_SIZE})")
        gamma, beta = self.instrument_film(c).chunk(2, dim=1)
        return features * (1.0 + gamma) + beta


def _batch_norm_folded_into_first_layer(windows: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                                        norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-mode BatchNorm of ``windows @ w + b`` as the weights and bias of one linear map.

    z = x w + b is linear in the windows x, so its batch mean and (biased) variance per channel are
    mean(x) w + b and diag(w^T cov(x) w): BatchNorm(z) = x (w s) + beta - mean(x) w s with
    s = gamma / sqrt(var + eps). Exactly the same function and gradients for w, gamma and beta as
    BatchNorm on z, with the statistics from the (K, K) covariance of the windows instead of passes
    over the (M, C) output (K window points, C = 32 outputs, M = batch x positions: M >> K, C).
    The windows must not need gradients (true of the input). Updates the running statistics as BatchNorm1d.
    """
    with torch.autocast(windows.device.type, enabled=False):
        # The windows of a smooth pattern are nearly collinear, so the variance of a channel that differentiates
        # can be a small difference of large covariance terms (a float32 covariance is off by up to ~3 % there).
        # In the basis of the windows' cosine transform the covariance's entries are of the size of what they
        # measure, so float32 products suffice (relative error ~1e-6, against float64 at twice the cost).
        x = windows.float()
        n, k = x.shape
        basis = _cosine_basis(k, x.device)
        mean_x = x.mean(0)
        y = (x - mean_x) @ basis.T.float()
        cov = (y.T @ y).double() / n
        u = basis @ w.double()
        var = ((cov @ u) * u).sum(0).to(w.dtype)
        shift = (mean_x.double() @ w.double()).to(w.dtype)
        w = w.float()
        scale = norm.weight / torch.sqrt(var + norm.eps)
        if norm.track_running_stats:
            with torch.no_grad():
                norm.num_batches_tracked.add_(1)
                factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
                norm.running_mean.mul_(1 - factor).add_(factor * (shift + b))
                norm.running_var.mul_(1 - factor).add_(factor * var * n / max(n - 1, 1))
        return w * scale, norm.bias - shift * scale


@functools.lru_cache(maxsize=8)
def _cosine_basis(k: int, device: torch.device) -> torch.Tensor:
    """The orthonormal DCT-II matrix (k, k) in float64: row j is the j-th cosine over a window of k points."""
    j = torch.arange(k, dtype=torch.float64, device=device)
    basis = torch.cos(torch.pi / k * (j[None, :] + 0.5) * j[:, None]) * (2.0 / k) ** 0.5
    basis[0] /= 2.0 ** 0.5
    return basis


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)



def fuse_batch_norm(model: QDotsNet) -> QDotsNet:
    """An eval-mode copy of ``model`` with each BatchNorm folded into its convolution.

    Same outputs (to float32 rounding) with about half the work per layer; for inference only.
    """
    cfg = dict(model.config, batch_norm=False, dropout=0.0)
    fused = QDotsNet(cfg).to(next(model.parameters()).device)
    with torch.no_grad():
        for src_conv, src_norm, dst in zip(model.convs, model.norms, fused.convs):
            w, b = src_conv.weight.detach(), src_conv.bias.detach()
            if isinstance(src_norm, nn.BatchNorm1d):
                s = src_norm.weight / torch.sqrt(src_norm.running_var + src_norm.eps)
                w = w * s[:, None, None]
                b = (b - src_norm.running_mean) * s + src_norm.bias
            dst.weight.copy_(w)
            dst.bias.copy_(b)
        for name, _ in head_sizes(model.config):
            getattr(fused, name).load_state_dict(getattr(model, name).state_dict())
        if model.instrument_film is not None:
            fused.instrument_film.load_state_dict(model.instrument_film.state_dict())
    return fused.eval()


def load_weights(model: QDotsNet, weights: Mapping[str, Any]) -> QDotsNet:
    """Load bundle weights (NumPy arrays or tensors, names as in ``state_dict_shapes``) into ``model``.

    Strict except for BatchNorm's ``num_batches_tracked`` counters, which bundles do not store.
    Raises ValueError when names or shapes do not fit.
    """
    tensors = {k: torch.as_tensor(v) for k, v in weights.items()}
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"weights do not fit the network ({exc})") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(f"weights do not fit the network: missing {missing}, unexpected {result.unexpected_keys}")
    return model


def bundle_weights(model: QDotsNet) -> dict[str, Any]:
    """The state dict as NumPy arrays, without ``num_batches_tracked`` (what a bundle stores)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}
