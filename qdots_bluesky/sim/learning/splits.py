"""Train / validation / test splits of a library by DSE simulation, made BEFORE augmentation.

Every simulation (one library pattern) goes to exactly one split, so no augmented twin of a test
pattern is ever trained on. The split is stratified by population (mean size x dispersion): each
population's strain variants are shuffled and dealt out, so every class appears in every split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def to_dict(self) -> dict[str, list[int]]:
        return {k: getattr(self, k).tolist() for k in ("train", "validation", "test")}


def split_by_simulation(population: np.ndarray, seed: int, test_fraction: float = 0.2,
                        validation_fraction: float = 0.1) -> Split:
    """Stratified split of simulation indices; fractions of each population go to test and validation."""
    if not (0 < test_fraction < 1 and 0 <= validation_fraction < 1 and test_fraction + validation_fraction < 1):
        raise ValueError("fractions must satisfy 0 < test, 0 <= validation and test + validation < 1")
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for p in np.unique(population):
        idx = rng.permutation(np.flatnonzero(population == p))
        n_test = max(1, int(round(test_fraction * idx.size))) if idx.size >= 3 else 0
        n_val = max(1, int(round(validation_fraction * idx.size))) if idx.size >= 3 and validation_fraction > 0 else 0
        test.extend(idx[:n_test])
        val.extend(idx[n_test:n_test + n_val])
        train.extend(idx[n_test + n_val:])
    return Split(np.sort(train), np.sort(val), np.sort(test))


def kfold_by_simulation(population: np.ndarray, n_folds: int, seed: int) -> list[np.ndarray]:
    """n_folds disjoint index sets covering all simulations, each stratified by population."""
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    offset = 0
    for p in np.unique(population):
        idx = rng.permutation(np.flatnonzero(population == p))
        for j, i in enumerate(idx):
            folds[(j + offset) % n_folds].append(int(i))
        offset += idx.size
    return [np.sort(np.asarray(f)) for f in folds]
