"""Train / validation / test splits by DSE simulation, made before augmentation."""
from __future__ import annotations

import numpy as np

from qdots_bluesky.sim.learning.splits import kfold_by_simulation, split_by_simulation


def test_split_by_simulation_is_disjoint_stratified_and_seeded():
    population = np.repeat(np.arange(68), 19)
    s = split_by_simulation(population, seed=3)
    all_idx = np.concatenate([s.train, s.validation, s.test])
    assert np.array_equal(np.sort(all_idx), np.arange(population.size))  # every simulation exactly once
    for part in (s.train, s.validation, s.test):
        assert set(population[part]) == set(range(68))  # every population in every split
    assert s.test.size == 68 * 4 and s.validation.size == 68 * 2
    again = split_by_simulation(population, seed=3)
    assert np.array_equal(again.test, s.test)
    assert not np.array_equal(split_by_simulation(population, seed=4).test, s.test)


def test_kfold_covers_everything_once():
    population = np.repeat(np.arange(10), 7)
    folds = kfold_by_simulation(population, 5, seed=0)
    joined = np.concatenate(folds)
    assert np.array_equal(np.sort(joined), np.arange(70))
    assert max(f.size for f in folds) - min(f.size for f in folds) <= 1
