"""How much of the size information is in the data: maximum-likelihood template classifiers.

    python benchmarks/bench_ml_bound.py --library library_q.h5 [--model PATH] [--seed 0]

Each held-out simulation of the model's test split is mixed with a solvent and drawn with Poisson
noise exactly as in the evaluation's reference conditions (and its 251 / 626-point and 4 % w/w
robustness cases). Two classifiers then know everything but the nanocrystals: the solvent, the
area fraction and the exposure. Each computes the Poisson log-likelihood of the counts under a set
of clean library patterns (on the Q range the network reads, 1-14.43 1/A) and answers the size
class of the most likely one:

- *exact template*: all 1292 library patterns (17 sizes x 4 dispersions x 19 strains), the held-out
  simulation itself included. It knows the very structure that made the pattern, so it is an upper
  bound, and a loose one: it measures what the noise and the sampling leave of the pattern, not
  how hard it is to size a dot never seen.
- *nearest training template*: only the training and validation simulations, which is classical
  template matching (DSE fitting restricted to a library) against what the network learned from.
  Its accuracy is the baseline the network has to beat: it does not generalise across strains
  (the lattice parameter moves every peak), which the network learns to ignore.

Prints one accuracy per case and classifier (seconds each on 2 cores).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from qdots_bluesky.models.bundle import default_bundle_path, read_bundle
from qdots_bluesky.sim.learning.evaluation import weight_to_area_fraction
from qdots_bluesky.sim.physics.library import load_library
from qdots_bluesky.sim.physics.solvents import solvent_pattern
from qdots_bluesky.sim.learning.sources import REFERENCE_FRACTIONS, REFERENCE_SNRS, REFERENCE_SOLVENTS, class_labels
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


def template_sets(lib, known: np.ndarray, labels: np.ndarray,
                  mix_weights=(0.25, 0.5, 0.75)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three template sets as (weights over library patterns, size labels):

    - "exact template": every library pattern (the held-out ones included);
    - "nearest training template": the ``known`` (training + validation) patterns;
    - "strain-refined training templates": those plus, within each population, mixtures w A + (1 - w) B
      of the known patterns of neighbouring strains (a linear interpolation of the strain: its steps of
      0.04 % move a peak by a tenth of its width or less), so a held-out strain between two known ones is
      matched without knowing it.
    """
    n = lib.n_patterns
    eye = np.eye(n)
    rows, lab = [eye[known]], [labels[known]]
    for pop in np.unique(lib.population[known]):
        members = known[lib.population[known] == pop]
        members = members[np.argsort(lib.strain[members])]
        for a, b in zip(members[:-1], members[1:]):
            for w in mix_weights:
                rows.append((w * eye[a] + (1.0 - w) * eye[b])[None, :])
                lab.append(labels[[a]])
    return {"exact template": (eye, labels),
            "nearest training template": (eye[known], labels[known]),
            "strain-refined training templates": (np.concatenate(rows), np.concatenate(lab))}


def template_accuracies(lib, test: np.ndarray, sets: dict[str, tuple[np.ndarray, np.ndarray]], labels: np.ndarray,
                        n_points: int, fractions, snrs, rng: np.random.Generator,
                        q_seen: float = 14.43) -> dict[str, float]:
    """Accuracy of the maximum-likelihood size class over each template set, over solvents x fractions x SNRs."""
    nc, solv, exposure = measured_patterns(lib, n_points)
    q_axis = np.linspace(lib.q[0], lib.q[-1], n_points)
    seen = q_axis <= q_seen
    correct: dict[str, list[np.ndarray]] = {name: [] for name in sets}
    for solvent in REFERENCE_SOLVENTS:
        for f in fractions:
            mix = f * nc + (1.0 - f) * solv[solvent][None, :]
            scale = None
            counts_by_snr = []
            for snr in snrs:
                scale = snr**2 / mix[test].mean(axis=1) * exposure  # SNR^2 counts on the average library step
                counts_by_snr.append((scale, rng.poisson(mix[test][:, seen] * scale[:, None])))
            for name, (weights, set_labels) in sets.items():
                lam = (weights @ mix)[:, seen]
                log_lam = np.log(np.maximum(lam, 1e-300))
                total = lam.sum(axis=1)
                for scale, counts in counts_by_snr:
                    loglik = counts @ log_lam.T - scale[:, None] * total[None, :]
                    correct[name].append(set_labels[loglik.argmax(axis=1)] == labels[test])
    return {name: float(np.mean(np.concatenate(c))) for name, c in correct.items()}


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
    known = np.concatenate([np.asarray(meta["split"]["train"]), np.asarray(meta["split"]["validation"])])
    rng = np.random.default_rng(args.seed)
    area_4 = weight_to_area_fraction(0.04)
    cases = [("reference conditions, 5004 points", lib.q.size, REFERENCE_FRACTIONS, REFERENCE_SNRS),
             ("reference conditions, 626 points", 626, REFERENCE_FRACTIONS, REFERENCE_SNRS),
             ("reference conditions, 251 points", 251, REFERENCE_FRACTIONS, REFERENCE_SNRS),
             (f"4 % w/w ({area_4:.3f} of the area), reference SNRs", lib.q.size, (area_4,), REFERENCE_SNRS)]
    sets = template_sets(lib, known, labels)
    print(f"maximum-likelihood size accuracy on {test.size} held-out simulations (knowing solvent, fraction, exposure);")
    print("template sets: " + ", ".join(f"{name} ({w.shape[0]})" for name, (w, _) in sets.items()))
    print(f"  {'case':>45}" + "".join(f"  {name:>33}" for name in sets))
    for label, n, fractions, snrs in cases:
        acc = template_accuracies(lib, test, sets, labels, n, fractions, snrs, rng)
        print(f"  {label:>45}" + "".join(f"  {acc[name]:>33.1%}" for name in sets), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
