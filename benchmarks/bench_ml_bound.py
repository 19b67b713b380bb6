"""How much of the size information is in the data: an oracle maximum-likelihood classifier.

    python benchmarks/bench_ml_bound.py --library library_q.h5 [--model PATH] [--seed 0]

Each held-out simulation of the model's test split is mixed with a solvent and drawn with Poisson
noise exactly as in the evaluation's reference conditions (and its 251 / 626-point and 4 % w/w
robustness cases). The classifier then knows everything but the nanocrystals: the solvent, the
area fraction and the exposure. It computes the Poisson log-likelihood of the counts under every
library pattern (all 17 sizes x 4 dispersions x 19 strains, on the Q range the network reads,
1-14.43 1/A) and answers the size class of the most likely one. Its accuracy is an upper bound for
any classifier that does not know the solvent and the fraction: where the network falls far below
it, the network (its size, its training), not the physics, is the limit.

Prints one accuracy per case (seconds each on 2 cores).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from qdots_bluesky.models.bundle import default_bundle_path, read_bundle
from qdots_bluesky.sim.evaluation import weight_to_area_fraction
from qdots_bluesky.sim.library import load_library
from qdots_bluesky.sim.solvents import solvent_pattern
from qdots_bluesky.sim.training import REFERENCE_FRACTIONS, REFERENCE_SNRS, REFERENCE_SOLVENTS, class_labels
from qdots_bluesky.standardize import QGrid, standardize_batch


def measured_patterns(lib, n_points: int) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Library patterns and solvents on an n_points axis over 1-15 1/A (bin averages, mean 1), and the
    exposure factor: a bin of k library steps holds k times the counts (as in the augmentation)."""
    solvents = {s: solvent_pattern(s, lib.q, wavelength_a=float(lib.settings.get("wavelength_a", 0.56)))
                for s in REFERENCE_SOLVENTS}
    if n_points == lib.q.size:
        nc = lib.total / lib.total.mean(axis=1, keepdims=True)
        return nc, {s: y / y.mean() for s, y in solvents.items()}, 1.0
    grid = QGrid(float(lib.q[0]), float(lib.q[-1]), n_points)
    nc = standardize_batch(lib.q, lib.total, x_unit="q", grid=grid)[0].astype(np.float64)
    solv = {s: standardize_batch(lib.q, y[None, :], x_unit="q", grid=grid)[0][0].astype(np.float64)
            for s, y in solvents.items()}
    return nc, solv, lib.q.size / n_points


def oracle_accuracy(lib, test: np.ndarray, labels: np.ndarray, n_points: int, fractions, snrs,
                    rng: np.random.Generator, q_seen: float = 14.43) -> float:
    """Accuracy of the oracle maximum-likelihood size class over solvents x fractions x SNRs."""
    nc, solv, exposure = measured_patterns(lib, n_points)
    q_axis = np.linspace(lib.q[0], lib.q[-1], n_points)
    seen = q_axis <= q_seen
    correct = []
    for solvent in REFERENCE_SOLVENTS:
        for f in fractions:
            mix = f * nc + (1.0 - f) * solv[solvent][None, :]
            lam_all = mix[:, seen]
            log_lam = np.log(np.maximum(lam_all, 1e-300))
            for snr in snrs:
                scale = snr**2 / mix[test].mean(axis=1) * exposure  # SNR^2 counts on the average library step
                counts = rng.poisson(lam_all[test] * scale[:, None])
                loglik = counts @ log_lam.T - scale[:, None] * lam_all.sum(axis=1)[None, :]
                correct.append(labels[loglik.argmax(axis=1)] == labels[test])
    return float(np.mean(np.concatenate(correct)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--library", type=Path, required=True, help="the library the model was trained on (Q grid)")
    p.add_argument("--model", type=Path, default=None, help="bundle whose test split is used (default: the shipped model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws (default 0)")
    args = p.parse_args()
    meta = read_bundle(args.model or default_bundle_path()).metadata
    lib = load_library(args.library, grid="q")
    test = np.asarray(meta["split"]["test"])
    labels = class_labels(lib.mean_diameter_nm, np.asarray(meta["size_classes_nm"]))
    rng = np.random.default_rng(args.seed)
    area_4 = weight_to_area_fraction(0.04)
    cases = [("reference conditions, 5004 points", lib.q.size, REFERENCE_FRACTIONS, REFERENCE_SNRS),
             ("reference conditions, 626 points", 626, REFERENCE_FRACTIONS, REFERENCE_SNRS),
             ("reference conditions, 251 points", 251, REFERENCE_FRACTIONS, REFERENCE_SNRS),
             (f"4 % w/w ({area_4:.3f} of the area), reference SNRs", lib.q.size, (area_4,), REFERENCE_SNRS)]
    print(f"oracle maximum-likelihood size accuracy on {test.size} held-out simulations (knows solvent, fraction, exposure):")
    for label, n, fractions, snrs in cases:
        print(f"  {label:>45}: {oracle_accuracy(lib, test, labels, n, fractions, snrs, rng):.1%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
