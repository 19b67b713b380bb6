"""A stand-in augmenter and source for the learning steps' unit tests (no library, no physics)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from qdots_bluesky.sim.learning.sources import row_targets

SIZE_CLASSES = np.array([2.0, 4.0, 6.0])
DISPERSION_CLASSES = np.array([0.05, 0.2])


class FakeAugmenter:
    """Patterns of mean ~1 on ``n_points`` points; every third clean pattern (index % 3 == 0) is a blank."""

    solvent_names = ("hexane", "toluene")
    settings = SimpleNamespace(empty_blank_share=0.1)

    def __init__(self, n_points: int = 5004, fail: bool = False):
        self.n_points, self.fail = n_points, fail

    def sample(self, idx, rng):
        if self.fail:
            raise RuntimeError("augmentation failed")
        idx = np.asarray(idx)
        x = (1.0 + 0.1 * rng.standard_normal((idx.size, self.n_points)) + 0.05 * idx[:, None]).astype(np.float32)
        return x, {"fraction": np.where(idx % 3 == 0, 0.0, 1.0)}

    def fixed(self, indices, rng, *, fraction, snr, solvent, q_min, q_max, n_points, lab, background):
        x = np.full((np.asarray(indices).size, n_points), fraction + rng.random(), np.float32)
        return x, {"fraction": np.full(x.shape[0], fraction)}

    def with_lattice_jitter(self, rng, indices):
        jittered = FakeAugmenter(self.n_points)
        jittered.jitter = rng.random()
        return jittered


def fake_targets(n: int = 12) -> dict[str, np.ndarray]:
    """Targets of ``n`` clean patterns cycling through the size and dispersion classes."""
    mean = SIZE_CLASSES[np.arange(n) % 3]
    disp = DISPERSION_CLASSES[np.arange(n) % 2]
    return row_targets(mean, mean * 1.1, disp, np.zeros(n), SIZE_CLASSES, DISPERSION_CLASSES)


def fake_source(n: int = 12, augmenter: FakeAugmenter | None = None):
    """A source giving the same ``n`` clean patterns every epoch."""
    augmenter = augmenter or FakeAugmenter()
    targets = fake_targets(n)
    return lambda rng: (augmenter, np.arange(n), targets)
