"""How a sizing model reads faceted dots: simulated populations of every habit, sized through the Predictor.

    python benchmarks/bench_habits.py [--model PATH] [--n 150] [--seed 0] [--sizes 2.5 9.5] [--counts 2000]
                                      [--json OUT.json]

For each habit of :mod:`qdots_bluesky.sim.physics.habits` (the near-spherical series, octahedra, truncated
octahedra, cuboctahedra, cubes, rhombic dodecahedra: same equal-volume diameters) the same ``--n`` log-normal
populations (mean diameter uniform in ``--sizes`` nm, dispersion 0.05-0.20, strain -0.3..+0.5 %) are computed on the
standard Q grid (1-15 1/A, 5004 points, the reference library's wavelength; Compton included), drawn as counts of
mean ``--counts`` per point and sized by the model (``Predictor.predict_pattern``, as ``qdots predict`` does). Prints
per habit the MAE and mean error (bias) of the number-weighted D_N against the truth, the share within 2 stated
uncertainties and the median uncertainty. No solvent, background or instrument: the habit alone. The first run
builds the habits' bases (10-30 s each, cached).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from qdots_bluesky.predictor import Predictor
from qdots_bluesky.sim.physics.cluster_basis import build_cluster_basis
from qdots_bluesky.sim.physics.habits import HABITS
from qdots_bluesky.sim.physics.library import LibrarySettings

Q_GRID = (1.0, 15.0, 5004)


def habit_figures(predictor: Predictor, n: int = 150, seed: int = 0, sizes_nm: tuple[float, float] = (2.5, 9.5),
                  counts: float = 2000.0, habits: tuple[str, ...] = HABITS) -> dict[str, dict[str, float]]:
    """Per habit: MAE and bias of D_N (nm), share within 2 stated sigma, median sigma (nm), over ``n`` populations."""
    settings = LibrarySettings(max_diameter_nm=min(21.0, 2.0 * sizes_nm[1] + 2.0))
    q = np.linspace(*Q_GRID)
    rng = np.random.default_rng(seed)
    mean = rng.uniform(*sizes_nm, n)
    disp = rng.uniform(0.05, 0.20, n)
    strain = rng.uniform(-0.003, 0.005, n)
    out = {}
    for habit in habits:
        basis = build_cluster_basis(settings, q, habit=habit)
        crystal, compton = basis.patterns(mean, disp, strain)
        y = (crystal + compton).astype(float)
        y = rng.poisson(y / y.mean(axis=1, keepdims=True) * counts).astype(float)
        est = [predictor.predict_pattern(q, row, x_unit="q", wavelength=settings.wavelength_a) for row in y]
        size = np.array([np.nan if e.size_nm is None else e.size_nm for e in est], dtype=float)
        sigma = np.array([np.nan if e.size_std_nm is None else e.size_std_nm for e in est], dtype=float)
        err = size - mean
        out[habit] = {"mae_nm": float(np.nanmean(np.abs(err))), "bias_nm": float(np.nanmean(err)),
                      "within_2_sigma": float(np.mean(np.abs(err) < 2 * sigma)),
                      "median_sigma_nm": float(np.nanmedian(sigma)), "sized": int(np.isfinite(size).sum()), "n": n}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model bundle (default: the shipped model)")
    ap.add_argument("--n", type=int, default=150, help="populations per habit (default 150)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the populations and the counts (default 0)")
    ap.add_argument("--sizes", type=float, nargs=2, default=(2.5, 9.5), metavar=("LO", "HI"),
                    help="range of the mean diameters in nm (default 2.5 9.5)")
    ap.add_argument("--counts", type=float, default=2000.0, help="mean counts per point (default 2000)")
    ap.add_argument("--instrument-fwhm", type=float, nargs=2, default=None, metavar=("GAUSS", "LORENTZ"),
                    help="tell a model with an instrument input this resolution (1/A; 0 0: the simulations' own, "
                         "none) (default: unknown)")
    ap.add_argument("--json", default=None, metavar="OUT", help="write the figures as JSON to OUT")
    args = ap.parse_args(argv)
    if args.n < 1 or not 1.0 <= args.sizes[0] < args.sizes[1] <= 10.0 or args.counts <= 0:
        ap.error("accepted: --n >= 1, 1 <= LO < HI <= 10 nm (the trained range), --counts > 0")
    try:
        predictor = Predictor.from_bundle(args.model, device="numpy")
    except (OSError, ValueError) as exc:
        ap.error(f"--model {args.model}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if args.instrument_fwhm is not None:
        try:
            predictor = Predictor(predictor.contents, "numpy", instrument_fwhm_q=args.instrument_fwhm)
        except ValueError as exc:
            ap.error(f"--instrument-fwhm: {exc}")
    t = time.perf_counter()
    figures = habit_figures(predictor, args.n, args.seed, tuple(args.sizes), args.counts)
    told = "unknown" if args.instrument_fwhm is None else "told {:g} {:g} 1/A".format(*args.instrument_fwhm)
    print(f"model {args.model or 'shipped'}: {args.n} populations per habit, D {args.sizes[0]:g}-{args.sizes[1]:g} nm, "
          f"~{args.counts:g} counts a point, instrument {told} ({time.perf_counter() - t:.0f} s)")
    for habit, f in figures.items():
        print(f"{habit:21s} MAE {f['mae_nm']:.3f} nm  bias {f['bias_nm']:+.3f} nm  within 2 sigma "
              f"{100 * f['within_2_sigma']:.0f} %  median sigma {f['median_sigma_nm']:.3f} nm  sized {f['sized']}/{f['n']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
