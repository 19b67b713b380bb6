"""Size accuracy on dilute samples, per signal-to-noise ratio and solvent.

    python benchmarks/bench_dilute.py --library library_q.h5 [--model PATH] [--weight-fraction 0.04 0.05] [--repeats 4]
                                      [--split train]

Every held-out simulation of the model's test split is drawn ``--repeats`` times in each reference
solvent (hexane, toluene) at each reference SNR (122, 46, 24, 14) at a fixed PbS weight fraction
(4 % w/w = 8.9 % of the area), full Q range and sampling, and sized by the main network. The
conditions are crossed rather than drawn, so the mean over SNRs is the benchmark's 4 % w/w figure
on a draw of its own (272 simulations x 2 solvents x 4 SNRs x 4 repeats = 8704 patterns); the rows
say where the errors are: which SNR, which solvent, and how many fall within one class.

``--split train`` draws the simulations the network trained on instead (884 of them) under the same
conditions: the difference from the test split is the generalization gap, what the network knows of
the very simulations it saw and not of the populations.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from qdots_bluesky.predictor import Predictor
from qdots_bluesky.sim.learning.augment import AugmentationSettings, Augmenter
from qdots_bluesky.sim.learning.evaluation import binomial_standard_error, weight_to_area_fraction
from qdots_bluesky.sim.physics.library import load_library
from qdots_bluesky.sim.learning.sources import REFERENCE_SNRS, REFERENCE_SOLVENTS, class_labels


def dilute_accuracy(predictor, lib, weight_fraction: float, repeats: int, seed: int, split: str = "test") -> dict:
    """Top-1 and within-one-class hits per (SNR, solvent) at one weight fraction; see the module docstring.

    ``predictor``: a :class:`~qdots_bluesky.predictor.Predictor` (its bundle's augmentation and splits; the classes
    as the predictor reports them); ``lib``: the library on the Q grid; ``split``: the bundle's split whose
    simulations are drawn ("test", "validation" or "train").
    """
    meta = predictor.metadata
    augmenter = Augmenter.from_library(lib, AugmentationSettings.from_dict(meta["augmentation"]))
    y = class_labels(lib.mean_diameter_nm, np.asarray(meta["size_classes_nm"]))
    sims = np.tile(np.asarray(meta["split"][split]), repeats)
    rng = np.random.default_rng(seed)
    rows = {}
    for snr in REFERENCE_SNRS:
        for solvent in REFERENCE_SOLVENTS:
            x, _ = augmenter.fixed(sims, rng, fraction=weight_to_area_fraction(weight_fraction), snr=snr,
                                   solvent=solvent, q_min=1.0, q_max=15.0, n_points=5004, lab=False, background=False)
            predicted = np.array([np.argmax(list(e.probabilities.values())) for e in predictor.predict_standardized(x)])
            rows[(snr, solvent)] = (predicted == y[sims], np.abs(predicted - y[sims]) <= 1)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, required=True, help="the training library (its test split is used)")
    parser.add_argument("--model", type=Path, default=None, help="model bundle (default: the shipped model)")
    parser.add_argument("--weight-fraction", type=float, nargs="+", default=[0.04],
                        help="PbS weight fractions to test, e.g. 0.04 0.05 (default 0.04)")
    parser.add_argument("--repeats", type=int, default=4,
                        help="draws of each held-out simulation per SNR and solvent (default 4: 8704 patterns)")
    parser.add_argument("--seed", type=int, default=9, help="seed of the noise draws (default 9)")
    parser.add_argument("--split", choices=("test", "validation", "train"), default="test",
                        help="whose simulations to draw (default test; train: the generalization gap)")
    args = parser.parse_args(argv)
    if not args.library.is_file():
        print(f"bench_dilute: {args.library} does not exist; build it with `qdots library build --no-tth -o ...`",
              file=sys.stderr)
        return 2
    predictor = Predictor.from_bundle(args.model, device="cpu", batch_size=2048)
    lib = load_library(args.library, grid="q")
    for w in args.weight_fraction:
        rows = dilute_accuracy(predictor, lib, w, args.repeats, args.seed, args.split)
        hits = np.concatenate([r[0] for r in rows.values()])
        print(f"{w * 100:g} % w/w ({weight_to_area_fraction(w) * 100:.1f} % of the area), {hits.size} patterns of "
              f"{args.split} simulations: "
              f"top-1 {hits.mean() * 100:.2f} +- {binomial_standard_error(hits) * 100:.2f} %")
        for snr in REFERENCE_SNRS:
            per = [rows[(snr, s)] for s in REFERENCE_SOLVENTS]
            top1 = np.concatenate([p[0] for p in per]).mean()
            within = np.concatenate([p[1] for p in per]).mean()
            by_solvent = ", ".join(f"{s} {p[0].mean() * 100:.1f} %" for s, p in zip(REFERENCE_SOLVENTS, per))
            print(f"  SNR {snr:5g}: top-1 {top1 * 100:5.1f} % ({by_solvent}), within one class {within * 100:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
