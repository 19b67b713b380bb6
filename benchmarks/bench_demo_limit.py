"""What the PbS demo's patterns tell: the network against the DSE refinement with the exact model.

    python benchmarks/bench_demo_limit.py [--count-rate 1e4] [--temperature 140] [--points 30] [--seed 0]
                                          [--max-diameter 21] [--model PATH] [--json OUT]

The patterns are those ``qdots demo`` measures (the simulated reactor's growth law at ``--temperature``, one pattern
every 2 min of reaction, the X04SA-like WAXS detector with its built-in hexane and counting noise at ``--count-rate``
counts/s on the strongest point), drawn here without a RunEngine. Each is sized by the network (the shipped model or
``--model``) and refined by ``refine_pattern`` (as ``qdots fit`` does, with its weights from the counts) with the
detector's own solvent model, started from the network's estimate, twice: with the instrument resolution held at 0 (the simulated detector has none: the exact model) and
refined (the default of ``qdots fit``, for a resolution not known beforehand). Prints per pattern the true
number-weighted mean diameter and dispersion, each estimate +- its uncertainty, then for each the mean |error| and the
share within 2 stated uncertainties. The gap between the two refinements is what an unknown peak-width share costs; the
network, which must assume one (measured peaks carry it), is to be read against the refinement that refines it. A
model trained with an instrument input (``qdots train --known-instrument-share``) is also run told the detector's
resolution (0: ideal), as ``qdots demo`` tells it: read that column against the refinement with the resolution held.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from qdots_bluesky.predictor import Predictor
from qdots_bluesky.refine import refine_pattern
from qdots_bluesky.sim.beamline import make_simulated_beamline
from qdots_bluesky.sim.beamline.growth import GrowthLaw

#: Reaction seconds between the demo's patterns (2 s apart at the default time scale of 60).
DEMO_STEP_S = 120.0
#: Initial sulfur precursor concentration of the demo's reactor (mmol/L).
PRECURSOR_MM = 30.0


def demo_patterns(count_rate: float, temperature_c: float, points: int, seed: int, max_diameter_nm: float = 21.0):
    """(2theta axis in deg, wavelength in A, true means nm, true dispersions, noisy counts (points, len(axis))) of the
    demo's sized patterns (the first, at injection, holds no dots and is left out)."""
    law = GrowthLaw()
    times = np.arange(1, points) * DEMO_STEP_S
    traj = law.trajectory(times, temperature_c, PRECURSOR_MM)
    _, det = make_simulated_beamline(clock="manual", progress=False, count_rate=count_rate, seed=seed,
                                     max_diameter_nm=max_diameter_nm)
    x, wl = det.tth.get(), float(det.wavelength.get())
    rng = np.random.default_rng(seed)
    counts = np.array([rng.poisson(det.expected_counts(m, s, f)).astype(float)
                       for m, s, f in zip(traj["mean_nm"], traj["dispersion"], traj["fraction"])])
    return x, wl, np.asarray(traj["mean_nm"]), np.asarray(traj["dispersion"]), counts


def summary(truth: np.ndarray, size: np.ndarray, std: np.ndarray) -> dict:
    """Mean |error| (nm) over the sized patterns, the share within 2 uncertainties, and how many were sized."""
    ok = np.isfinite(size) & np.isfinite(std)
    err = np.abs(size[ok] - truth[ok])
    return {"sized": int(ok.sum()), "n": int(truth.size), "mae_nm": float(err.mean()) if ok.any() else None,
            "within_2_sigma": float(np.mean(err <= 2 * std[ok])) if ok.any() else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count-rate", type=float, default=1e4,
                        help="detector counts/s on the strongest point, 1 s exposures (default 1e4, as qdots demo)")
    parser.add_argument("--temperature", type=float, default=140.0, help="reaction temperature, deg C (default 140)")
    parser.add_argument("--points", type=int, default=30, help="patterns of the scan, the first at injection (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the counting noise (default 0)")
    parser.add_argument("--max-diameter", type=float, default=21.0, metavar="NM",
                        help="largest cluster (nm) of the detector's patterns and of the refinement's basis (default "
                             "21, as qdots demo; smaller is faster, for short scans of small dots)")
    parser.add_argument("--model", default=None, help="model bundle (default: the shipped model)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the rows and summaries as JSON")
    args = parser.parse_args(argv)
    if args.points < 2:
        parser.error("--points must be at least 2")

    predictor = Predictor.from_bundle(args.model, device="numpy")
    told = (Predictor(predictor.contents, "numpy", instrument_fwhm_q=(0.0, 0.0))
            if predictor.contents.config.get("instrument_input") else None)
    x, wl, truth, disp, counts = demo_patterns(args.count_rate, args.temperature, args.points, args.seed,
                                               args.max_diameter)
    rows = []
    print(f"{'true D':>6} {'disp':>5} | {'network':>13} | " + (f"{'network told 0':>14} | " if told else "")
          + f"{'refined, resolution 0':>21} | {'refined, resolution refined':>27}")
    for d_true, s_true, y in zip(truth, disp, counts):
        net = predictor.predict_pattern(x, y, x_unit="tth", wavelength=wl)
        row = {"true_nm": float(d_true), "true_dispersion": float(s_true),
               "network": (net.size_nm, net.size_std_nm)}
        if told is not None:
            known = told.predict_pattern(x, y, x_unit="tth", wavelength=wl)
            row["network_told"] = (known.size_nm, known.size_std_nm)
        for key, instrument in (("exact", (0.0, 0.0)), ("resolution_refined", None)):
            r = refine_pattern(x, y, wavelength_a=wl, solvent="hexane", network=net,  # qdots fit's weights
                               instrument_fwhm=instrument, max_diameter_nm=args.max_diameter, keep_curves=False)
            row[key] = (r.size_nm, r.size_std_nm)
            row[key + "_flags"] = list(r.flags)
        rows.append(row)
        cells = {k: f"{row[k][0]:6.2f} +- {row[k][1]:4.2f}" for k in ("network", "network_told", "exact",
                                                                         "resolution_refined") if k in row}
        print(f"{d_true:6.2f} {s_true:5.3f} | {cells['network']:>13} | "
              + (f"{cells['network_told']:>14} | " if told else "")
              + f"{cells['exact']:>21} | {cells['resolution_refined']:>27}")
    out = {}
    columns = [("network", "network (instrument unknown)" if told else "network")]
    if told is not None:
        columns.append(("network_told", "network told the detector's resolution (0)"))
    for key, label in columns + [("exact", "refined, resolution held at 0 (exact model)"),
                                 ("resolution_refined", "refined, resolution refined")]:
        est = np.array([r[key] for r in rows], dtype=float)
        out[key] = s = summary(truth, est[:, 0], est[:, 1])
        mae = "-" if s["mae_nm"] is None else f"{s['mae_nm']:.3f} nm"
        share = "-" if s["within_2_sigma"] is None else f"{100 * s['within_2_sigma']:.0f} %"
        print(f"{label}: sized {s['sized']} of {s['n']}, mean |error| {mae}, within 2 uncertainties {share}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows, "summary": out}, indent=1,
                                              default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
