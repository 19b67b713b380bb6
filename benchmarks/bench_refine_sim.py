"""The DSE refinement on simulations of its own model: found where there are dots, not where there are none, unbiased,
and e.s.d.s that cover the truth, over many draws.

    python benchmarks/bench_refine_sim.py [--geometry capillary|flat-plate] [--draws 240] [--blanks 60] [--seed 0]
                                          [--max-diameter 12] [--json OUT]

Each draw is a capillary pattern at 0.564162 A on Q 1-8 1/A (the basis grid of the refinement's own cluster series
up to ``--max-diameter``, so nothing unmodelled enters): a log-normal population of PbS dots (mean diameter 2-8 nm,
at most 0.7 of the largest cluster, dispersion 0.05-0.25, strain -0.3 to +0.5 %) at 3-10 000 counts a point on
average, the built-in hexane at 0.3-300 times the dots' level and a sloped background, Poisson counts; then refined by ``refine_pattern`` without sigma
(``qdots fit``'s weights from the counts) with the hexane model, the instrument resolution refined (the default) and
held at 0. ``--blanks`` more draws hold no dots (hexane and background alone). ``--geometry flat-plate``: laboratory
films instead, Cu K-alpha1/2 on 2theta 22-80 deg in 0.02 deg steps, the refinement's own flat-plate model (K-alpha
doublet, polarization, a sample displacement of +-0.1 mm, in half of the draws a free scale per reflection family,
log-normal with sigma 0.3), no solvent, a sloped background; refined as ``qdots fit --geometry flat-plate``. Prints, per instrument setting and
per group of draws (dispersion x D below or above the series' diameter step, the dots' counts), how many were sized,
the mean and spread of z = (D_N - truth) / e.s.d. (0 and 1 for e.s.d.s that are right; a spread below 1 means
e.s.d.s wider than the scatter), the shares within 1 and 2 e.s.d. (0.68 and 0.95 expected) and the median time; and
the false positives on the blanks. A flat plate's data (0.02 deg) are averaged onto the basis's Q step by the
refinement, so there the model is exact up to that averaging.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before NumPy loads BLAS
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from qdots_bluesky.refine import Geometry, refine_pattern  # noqa: E402
from qdots_bluesky.refine.basis import refinement_basis  # noqa: E402
from qdots_bluesky.refine.model import DotModel  # noqa: E402
from qdots_bluesky.sim.physics.solvents import solvent_pattern  # noqa: E402

WAVELENGTH_A = 0.564162
Q_RANGE = (1.0, 8.0)
#: Laboratory films: Cu K-alpha1 (A) and the 2theta axis (deg).
LAB_WAVELENGTH_A = 1.5406
LAB_TTH = np.arange(22.0, 80.0, 0.02)
SETTINGS = {"resolution refined": None, "resolution held at 0": (0.0, 0.0)}


#: Ranges of the draws: mean diameter (nm; at most MAX_SIZE_SHARE of the basis's largest cluster, as the fit's bound),
#: the dots' mean counts a point and the solvent's level over the dots'.
SIZE_RANGE_NM = (2.0, 8.0)
MAX_SIZE_SHARE = 0.7
COUNTS_RANGE = (3.0, 1e4)
SOLVENT_RATIO_RANGE = (0.3, 300.0)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_case(rng: np.random.Generator, dots: bool, max_size_nm: float = SIZE_RANGE_NM[1]) -> dict:
    """The parameters of one simulated pattern (dots=False: solvent and background alone)."""
    return {"size_nm": float(rng.uniform(SIZE_RANGE_NM[0], min(SIZE_RANGE_NM[1], max_size_nm))),
            "dispersion": float(rng.uniform(0.05, 0.25)), "strain": float(rng.uniform(-0.003, 0.005)),
            "counts": _log_uniform(rng, *COUNTS_RANGE), "solvent_ratio": _log_uniform(rng, *SOLVENT_RATIO_RANGE),
            "background": float(rng.uniform(0.0, 0.5)), "dots": dots, "seed": int(rng.integers(1 << 31))}


def simulate(basis, case: dict) -> tuple[np.ndarray, np.ndarray]:
    """(Q 1/A, Poisson counts) of ``case`` on the basis grid within Q_RANGE."""
    sel = (basis.q >= Q_RANGE[0]) & (basis.q <= Q_RANGE[1])
    q = basis.q[sel]
    level = case["counts"]
    lam = np.zeros_like(q)
    if case["dots"]:
        crys, comp = basis.patterns(np.array([case["size_nm"]]), np.array([case["dispersion"]]),
                                    np.array([case["strain"]]))
        nc = (crys + comp)[0, sel]
        lam = lam + level * nc / nc.mean()
    solv = solvent_pattern("hexane", q, WAVELENGTH_A)
    lam = lam + case["solvent_ratio"] * level * solv / solv.mean()
    lam = lam + case["background"] * level * (1.0 + 0.1 * (q - q[0]))
    return q, np.random.default_rng(case["seed"]).poisson(lam).astype(float)


def simulate_flat_plate(model: DotModel, case: dict, rng_texture: np.random.Generator) -> np.ndarray:
    """Counts on LAB_TTH of a textured (or not) film of ``case`` through the refinement's flat-plate ``model``."""
    displacement = float(rng_texture.uniform(-0.1, 0.1))
    cols = model.columns(np.array([case["size_nm"], case["dispersion"], case["strain"], 0.0, displacement]))
    textured = rng_texture.random() < 0.5
    scales = np.exp(rng_texture.normal(0.0, 0.3, cols.shape[1] - 1)) if textured else np.ones(cols.shape[1] - 1)
    level = case["counts"]
    lam = np.zeros(LAB_TTH.size)
    if case["dots"]:
        dots = cols[:, 0] + cols[:, 1:] @ scales
        lam = lam + level * dots / dots.mean()
    lam = lam + (0.2 + case["background"]) * level * (1.0 + 0.01 * (80.0 - LAB_TTH))
    return np.random.default_rng(case["seed"]).poisson(lam).astype(float)


def group_of(case: dict, step_nm: float) -> str:
    """'narrow' where the population's width (dispersion x D) is below the series' diameter step, else 'broad';
    with the dots' mean counts a point (under 30: weak dots, mostly far below the solvent's level)."""
    width = "narrow" if case["dispersion"] * case["size_nm"] < step_nm else "broad"
    counts = "< 30" if case["counts"] < 30 else "30-300" if case["counts"] < 300 else ">= 300"
    return f"{width}, {counts} counts"


def summarize(rows: list[dict]) -> dict:
    """Sized share, mean error / mean e.s.d., shares within 1 and 2 e.s.d., median ms of rows with dots."""
    sized = [r for r in rows if r["status"] == "sized"]
    out = {"n": len(rows), "sized": len(sized), "median_ms": float(np.median([r["ms"] for r in rows])) if rows else None}
    if sized:
        err = np.array([r["size_nm"] - r["truth_nm"] for r in sized])
        std = np.array([r["size_std_nm"] for r in sized])
        z = err / std
        out.update(bias_over_esd=float(err.mean() / std.mean()), z_mean=float(z.mean()), z_std=float(z.std()),
                   within_1=float(np.mean(np.abs(z) <= 1)), within_2=float(np.mean(np.abs(z) <= 2)),
                   median_abs_error_nm=float(np.median(np.abs(err))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--geometry", choices=("capillary", "flat-plate"), default="capillary",
                        help="synchrotron capillaries with solvent (default) or laboratory films on a flat plate")
    parser.add_argument("--draws", type=int, default=240, help="patterns with dots (default 240)")
    parser.add_argument("--blanks", type=int, default=60, help="patterns without dots (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    parser.add_argument("--max-diameter", type=float, default=12.0, metavar="NM",
                        help="largest cluster of the basis, nm (default 12)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write every row and the summaries as JSON")
    args = parser.parse_args(argv)
    if args.draws < 1 or args.blanks < 0:
        parser.error("--draws must be >= 1 and --blanks >= 0")
    flat = args.geometry == "flat-plate"
    if flat:
        basis = refinement_basis("PbS", LAB_WAVELENGTH_A, np.linspace(0.9, 6.0, 700), max_diameter_nm=args.max_diameter)
        geometry = Geometry(kind="flat-plate")
        q_lab = 4.0 * np.pi * np.sin(np.radians(LAB_TTH) / 2.0) / LAB_WAVELENGTH_A
        model = DotModel(basis, q_lab, LAB_WAVELENGTH_A, geometry, LAB_TTH)
        options = dict(x_unit="tth", wavelength_a=LAB_WAVELENGTH_A, geometry=geometry, solvent="none")
    else:
        basis = refinement_basis("PbS", WAVELENGTH_A, np.linspace(0.8, 8.5, 700), max_diameter_nm=args.max_diameter)
        options = dict(x_unit="q", wavelength_a=WAVELENGTH_A, solvent="hexane", q_range=Q_RANGE)
    rng = np.random.default_rng(args.seed)
    largest = MAX_SIZE_SHARE * float(basis.n.max() * basis.unit_nm)
    cases = ([draw_case(rng, True, largest) for _ in range(args.draws)]
             + [draw_case(rng, False, largest) for _ in range(args.blanks)])
    rows = []
    for i, case in enumerate(cases):
        if flat:
            x, y = LAB_TTH, simulate_flat_plate(model, case, np.random.default_rng(case["seed"] + 1))
        else:
            x, y = simulate(basis, case)
        for label, instrument in SETTINGS.items():
            t = time.perf_counter()
            r = refine_pattern(x, y, basis=basis, instrument_fwhm=instrument, keep_curves=False, **options)
            rows.append({"case": i, "setting": label, "dots": case["dots"], "group": group_of(case, basis.unit_nm),
                         "truth_nm": case["size_nm"], "status": r.status, "size_nm": r.size_nm,
                         "size_std_nm": r.size_std_nm, "flags": list(r.flags), "weights": r.weights,
                         "ms": 1e3 * (time.perf_counter() - t), **{f"case_{k}": v for k, v in case.items()}})
        if (i + 1) % 50 == 0:
            print(f"  {i + 1} of {len(cases)} patterns refined", file=sys.stderr, flush=True)
    summaries: dict = {}
    for label in SETTINGS:
        mine = [r for r in rows if r["setting"] == label]
        with_dots = [r for r in mine if r["dots"]]
        groups = sorted({r["group"] for r in with_dots})
        summaries[label] = {"all": summarize(with_dots), **{g: summarize([r for r in with_dots if r["group"] == g])
                                                             for g in groups}}
        blanks = [r for r in mine if not r["dots"]]
        summaries[label]["false_positives"] = sum(r["status"] == "sized" for r in blanks)
        summaries[label]["blanks"] = len(blanks)
        print(f"\n{label}: false positives {summaries[label]['false_positives']} of {len(blanks)} patterns without dots")
        print(f"  {'group':24s} {'n':>4} {'sized':>6} {'mean z':>7} {'sd z':>5} {'in 1 esd':>9} {'in 2 esd':>9} "
              f"{'med |err| nm':>13} {'ms':>6}")
        for g in ["all"] + groups:
            s = summaries[label][g]
            if "within_2" not in s:
                print(f"  {g:24s} {s['n']:4d} {s['sized']:6d}")
                continue
            print(f"  {g:24s} {s['n']:4d} {s['sized']:6d} {s['z_mean']:+7.2f} {s['z_std']:5.2f} "
                  f"{100 * s['within_1']:8.0f}% {100 * s['within_2']:8.0f}% {s['median_abs_error_nm']:13.3f} "
                  f"{s['median_ms']:6.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "summaries": summaries, "rows": rows},
                                              indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
