"""The metal-cluster network (issue 18) in PyTorch: shape (family) and size of Au nanoclusters from SAXS + WAXS.

Architecture, inputs and outputs: see :mod:`.cluster_engine` (the torch-free half: config, state-dict shapes, the
same network in NumPy). Two branches (SAXS part, WAXS part of the log-Q grid) of strided Conv1d + BatchNorm + ReLU,
a dense layer each; the family head reads the WAXS branch, the continuous (Gaussian: mean, log std) and presence
heads read both. With the default config: 276 365 parameters (~1.1 MB as float32, ~0.55 MB as float16).
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from .cluster_engine import BN_EPS, BRANCHES, DEFAULT_CLUSTER_CONFIG, branch_ranges, check_cluster_config, conv_lengths


class _Branch(nn.Module):
    """Strided convolutions over (centred value, mask, coordinate) of a slice of the grid, then one dense layer."""

    def __init__(self, length: int, widths: list[int], kernel: int, hidden: int):
        super().__init__()
        convs, norms, c_in = [], [], 3
        for width in widths:
            convs.append(nn.Conv1d(c_in, width, kernel, stride=2, padding=kernel // 2, bias=False))
            norms.append(nn.BatchNorm1d(width, eps=BN_EPS))
            c_in = width
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.fc = nn.Linear(widths[-1] * conv_lengths(length, len(widths))[-1], hidden)
        self.register_buffer("coord", torch.linspace(-1.0, 1.0, length), persistent=False)

    def forward(self, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        centre = (value * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1.0)
        h = torch.stack([(value - centre) * mask, mask, self.coord.expand_as(value)], dim=1)
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h)))
        return torch.relu(self.fc(h.flatten(1)))


class ClusterNet(nn.Module):
    """``ClusterNet(config=None, **overrides)``: the cluster network of :mod:`.cluster_engine`; ``config`` (a
    JSON-able dict, :data:`~.cluster_engine.DEFAULT_CLUSTER_CONFIG` by default) is kept as ``self.config``."""

    def __init__(self, config: Mapping[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = copy.deepcopy(dict(DEFAULT_CLUSTER_CONFIG if config is None else config))
        cfg.update(copy.deepcopy(overrides))
        self.config: dict[str, Any] = check_cluster_config(cfg)
        c = self.config
        self.ranges = branch_ranges(c)
        for name in BRANCHES:
            start, stop = self.ranges[name]
            setattr(self, name, _Branch(stop - start, c["widths"], c["kernel"], c["hidden"]))
        n_k = len(c["continuous_targets"])
        self.family_head = nn.Linear(c["hidden"], len(c["families"]))
        self.trunk = nn.Linear(2 * c["hidden"], c["hidden"])
        self.continuous_head = nn.Linear(c["hidden"], 2 * n_k)
        self.presence_head = nn.Linear(c["hidden"], 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: (B, 2, n_points) network inputs (asinh intensity, mask). Returns ``family_logits`` (B, F),
        ``continuous`` (B, 2K), ``presence_logit`` (B,), ``features`` (B, 2 hidden)."""
        n = self.config["n_points"]
        if x.dim() != 3 or x.shape[1] != 2 or x.shape[2] != n:
            raise ValueError(f"input of shape {tuple(x.shape)}; accepted: (B, 2, {n}) (asinh intensity, mask)")
        x = x.to(self.trunk.weight.dtype)
        feats = [getattr(self, name)(x[:, 0, a:b], x[:, 1, a:b]) for name, (a, b) in self.ranges.items()]
        features = torch.cat(feats, dim=1)
        trunk = torch.relu(self.trunk(features))
        return {"family_logits": self.family_head(feats[1]), "continuous": self.continuous_head(trunk),
                "presence_logit": self.presence_head(trunk)[:, 0], "features": features}
