"""Shared by the model tests: synthetic mean-1 patterns and a tiny bundle from an untrained, seeded QDotsNet.

The bundle tests format and plumbing, not accuracy: weights are random, the calibration tensors
are fitted on random labels of synthetic patterns.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qdots_bluesky.standardize import QGrid

GRID = QGrid()


def synthetic_patterns(n: int, seed: int = 0, grid: QGrid = GRID) -> np.ndarray:
    """(n, grid.n_points) float32 patterns with mean 1: a decaying background plus random Gaussian peaks."""
    rng = np.random.default_rng(seed)
    q = grid.q
    out = np.empty((n, q.size), dtype=np.float32)
    for i in range(n):
        y = rng.uniform(0.5, 2.0) * np.exp(-q / rng.uniform(3.0, 8.0))
        for c in rng.uniform(1.5, 14.5, size=rng.integers(5, 20)):
            y += rng.uniform(0.1, 1.0) * np.exp(-0.5 * ((q - c) / rng.uniform(0.02, 0.2)) ** 2)
        out[i] = y / y.mean()
    return out


def make_model(seed: int = 0):
    """A seeded, untrained QDotsNet in eval mode with non-trivial BatchNorm statistics."""
    import torch

    from qdots_bluesky.models.network import QDotsNet

    torch.manual_seed(seed)
    model = QDotsNet()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for norm in model.norms:
            norm.running_mean.copy_(0.05 * torch.randn(norm.running_mean.shape, generator=gen))
            norm.running_var.copy_(torch.rand(norm.running_var.shape, generator=gen) + 0.5)
            norm.weight.copy_(torch.rand(norm.weight.shape, generator=gen) + 0.5)
        if model.presence_head is not None:  # an untrained network that sees dots, so that its estimates carry sizes
            model.presence_head.bias.fill_(4.0)
    return model.eval()


def make_bundle(path: Path, seed: int = 0, n_calibration: int = 300, *, model=None, calibration_X=None,
                feature_options=None, coarse_model=None, coarse_min_q_step: float = 0.037, **metadata) -> Path:
    """Save a tiny bundle: a random network (or ``model``), calibration/OOD tensors fitted on its outputs for
    ``calibration_X`` (default: synthetic patterns) with random-ish labels; ``coarse_model``: a second network
    stored as the coarse-sampling specialist, calibrated the same way."""
    from qdots_bluesky.models.bundle import CoarseSpecialist, file_sha256, save_bundle

    model = make_model(seed) if model is None else model.eval()
    extras = _calibration(model, seed, n_calibration, calibration_X, feature_options)
    coarse = None
    if coarse_model is not None:
        coarse = CoarseSpecialist(coarse_model.eval(), _calibration(coarse_model, seed + 1, n_calibration, calibration_X,
                                                                    feature_options),
                                  coarse_min_q_step, {"training": {"note": "untrained test specialist"}})
    library = Path(path).with_suffix(".fake-library.h5")
    library.write_bytes(b"not really a library")
    meta = {
        "q_grid": GRID.to_dict(),
        "augmentation": {"solvents": ["hexane", "toluene"], "fractions": [1.0, 0.65, 0.37, 0.15], "snr": [122, 46, 24, 14]},
        "training_library": {"path": str(library), "sha256": file_sha256(library)},
        "training": {"epochs": 0, "seed": seed, "note": "untrained test bundle"},
        "metrics": {"test_accuracy": None},
    }
    meta.update(metadata)
    return save_bundle(path, model, meta, extras, coarse=coarse)


def _calibration(model, seed, n_calibration, calibration_X, feature_options):
    import torch

    from qdots_bluesky.models.calibration import calibration_tensors

    X = synthetic_patterns(n_calibration, seed=seed + 100) if calibration_X is None else calibration_X
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(X, dtype=np.float32)))
    rng = np.random.default_rng(seed)
    size_labels = out["size_logits"].argmax(1).numpy()
    flip = rng.random(size_labels.size) < 0.3
    size_labels[flip] = rng.integers(0, 17, flip.sum())
    disp_labels = out["dispersion_logits"].argmax(1).numpy()
    flip = rng.random(disp_labels.size) < 0.3
    disp_labels[flip] = rng.integers(0, 4, flip.sum())
    options = {"quantile": 1.0, "margin": 1.5} if feature_options is None else feature_options
    tensors = calibration_tensors(out["size_logits"], size_labels, out["dispersion_logits"], disp_labels,
                                  out["features"], **options)
    if model.config.get("continuous_head"):
        from qdots_bluesky.models.bundle import T_CONTINUOUS_INTERVAL

        n = len(model.config["continuous_scales"])
        tensors[T_CONTINUOUS_INTERVAL] = np.stack([np.full(n, np.log(1.5)), np.ones(n)]).astype(np.float32)  # x 1.5
    return tensors


def write_pattern(path: Path, x: np.ndarray, y: np.ndarray, header: dict | None = None) -> Path:
    """A two-column text file with '# key: value' header lines."""
    lines = [f"# {k}: {v}" for k, v in (header or {}).items()]
    lines += [f"{a:.8g} {b:.8g}" for a, b in zip(x, y)]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)
