"""How the network's sizes of measured patterns move when the same samples are recorded another way.

    python benchmarks/bench_measured_robustness.py DIR [--solvents DIR] [--draws N] [--model PATH]
                                                   [--instrument-fwhm G L] [--per-file] [--json OUT.json]

The held-out measured patterns come from other beamtimes, detectors and laboratory diffractometers than the
development set's. This benchmark derives, from each measured file of DIR (named as for
``bench_measured.py``: wavelength and reference size in the name), the pattern another set-up would have recorded
of the same sample, sizes it and compares it with the reference and with the estimate of the file as measured:

- a shorter Q range: the high-Q end cut at Q_max (a detector ending at a smaller angle, a longer wavelength), or
  the low-Q start moved up to Q_min (a beam stop or a detector starting further out);
- coarser sampling: for synchrotron data k consecutive points averaged into one (a strip detector binned more
  coarsely: each point holds k times the counts), for laboratory scans every k-th point kept (a coarser scan step at
  the same time per step: the same counts per point);
- a shorter exposure: for counts (laboratory scans), binomial thinning keeps each count with probability p, which
  makes exactly the Poisson counts of an exposure p times as long; for corrected data with a sigma column
  (synchrotron), Gaussian noise of sqrt(f^2 - 1) sigma added, f times the noise where the column is the points' own
  scatter (the X04SA files' points scatter by ~0.7 sigma, with some correlation between neighbours; the corrections
  are not redone); their sigma is 0.2-0.4 % of the intensity, so x64 gives 13-26 % a point;
- the solvent subtracted (synchrotron files with a blank named in the file name, e.g. ``_hexane``): the blank of
  ``--solvents`` (default DIR/../solvents) scaled as the DSE refinement of the file (``refine_pattern`` with that
  blank) finds it, subtracted point by point: what a beamline that subtracts its solvent delivers.

The noisy derivations are drawn ``--draws`` times (seeded by draw, file and derivation). Prints one line per
derivation: the files sized, MAE against the reference (all, synchrotron, laboratory), the share within 2 stated
uncertainties (a file without a size counts as outside), the mean and the
largest shift from the as-measured estimate (nm and in units of the derived estimate's uncertainty), the mean stated
uncertainty and the flags raised. ``--per-file`` adds every file's estimate. Nothing is trained or tuned on these
files: they show whether the sizes of files like them hold when the set-up changes. Skips cleanly without data.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_measured import NameInfo, find_files  # noqa: E402  (file-name parsing shared with the other benchmarks)

from qdots_bluesky.io import read_pattern  # noqa: E402
from qdots_bluesky.predictor import Predictor  # noqa: E402
from qdots_bluesky.units import tth_to_q  # noqa: E402

#: (x 2theta deg, y, sigma or None, rng) -> the derived (x, y, sigma).
Derive = Callable[[np.ndarray, np.ndarray, "np.ndarray | None", np.random.Generator],
                  "tuple[np.ndarray, np.ndarray, np.ndarray | None]"]
SOLVENT_NAMES = ("hexane", "toluene")
BLANK_WAVELENGTH_A = 0.564162  # the shared blanks' beamtime (their files carry no wavelength)


@dataclass
class Derivation:
    """One way of recording the samples otherwise: a label, the instrument kinds it applies to, whether it draws
    random numbers (then it is repeated ``--draws`` times) and the function that makes the pattern."""

    label: str
    kinds: tuple[str, ...]
    noisy: bool
    derive: Derive | None  # None: the solvent subtraction, which needs the file's refinement


def q_window(q_min: float | None, q_max: float | None, wavelength_a: float) -> Derive:
    """Keep the points with q_min <= Q <= q_max (1/A)."""
    def derive(x, y, sigma, rng):
        q = tth_to_q(x, wavelength_a)
        keep = np.ones(q.size, bool)
        if q_min is not None:
            keep &= q >= q_min
        if q_max is not None:
            keep &= q <= q_max
        return x[keep], y[keep], None if sigma is None else sigma[keep]
    return derive


def rebin(k: int) -> Derive:
    """Average k consecutive points into one (sigma combined as for a mean); a remainder is dropped."""
    def derive(x, y, sigma, rng):
        n = (x.size // k) * k
        mean = lambda a: a[:n].reshape(-1, k).mean(axis=1)  # noqa: E731
        s = None if sigma is None else np.sqrt((sigma[:n].reshape(-1, k) ** 2).sum(axis=1)) / k
        return mean(x), mean(y), s
    return derive


def decimate(k: int) -> Derive:
    """Keep every k-th point: a scan with a k times coarser step and the same counting time per step."""
    def derive(x, y, sigma, rng):
        return x[::k], y[::k], None if sigma is None else sigma[::k]
    return derive


def thin_counts(p: float) -> Derive:
    """Binomial thinning of counts: the Poisson counts of an exposure p times as long (laboratory scans)."""
    def derive(x, y, sigma, rng):
        if np.any(y < 0) or np.any(y != np.round(y)):
            raise ValueError("thinning needs counts (non-negative integers)")
        return x, rng.binomial(y.astype(np.int64), p).astype(float), None
    return derive


def more_noise(factor: float) -> Derive:
    """Gaussian noise of sqrt(factor^2 - 1) sigma added: ``factor`` times the noise of the file's sigma column."""
    def derive(x, y, sigma, rng):
        if sigma is None:
            raise ValueError("more noise needs a sigma column")
        extra = math.sqrt(factor**2 - 1.0) * sigma
        return x, y + rng.normal(0.0, 1.0, y.size) * extra, sigma * factor
    return derive


def derivations(wavelength_a: float) -> list[Derivation]:
    """The derived recordings of one file (those of its kind apply)."""
    syn, lab = ("synchrotron",), ("laboratory",)
    out = [Derivation("as measured", syn + lab, False, lambda x, y, s, rng: (x, y, s))]
    out += [Derivation(f"Q max {q:g} 1/A", syn, False, q_window(None, q, wavelength_a)) for q in (12.0, 10.0, 8.0, 6.0)]
    out += [Derivation(f"Q max {q:g} 1/A", lab, False, q_window(None, q, wavelength_a)) for q in (4.5, 4.0)]  # 2theta 67, 59 deg at Cu
    out += [Derivation(f"Q min {q:g} 1/A", syn + lab, False, q_window(q, None, wavelength_a)) for q in (1.5, 2.0)]
    out += [Derivation(f"{k} points averaged", syn, False, rebin(k)) for k in (4, 16, 32)]
    out += [Derivation(f"1 point in {k} kept (coarser scan step)", lab, False, decimate(k)) for k in (2, 4)]
    out += [Derivation(f"exposure x{p:g} (counts thinned)", lab, True, thin_counts(p)) for p in (0.25, 1 / 16)]
    out += [Derivation(f"noise x{f:g} (Gaussian added)", syn, True, more_noise(f)) for f in (4.0, 16.0, 64.0)]
    out += [Derivation("solvent subtracted (refined blank scale)", syn, False, None)]
    return out


def subtract_solvent(path: Path, info: NameInfo, x, y, sigma, solvents_dir: Path) -> tuple | None:
    """The file with its named solvent's blank subtracted at the scale the DSE refinement finds; None without one."""
    from qdots_bluesky.refine import load_blank, refine_pattern

    named = next((s for s in SOLVENT_NAMES if s in path.stem.lower()), None)
    blank_path = solvents_dir / f"{named}.xye" if named else None
    if blank_path is None or not blank_path.is_file():
        return None
    blank = load_blank(blank_path, None, default_wavelength_a=BLANK_WAVELENGTH_A)
    result = refine_pattern(x, y, sigma, wavelength_a=info.wavelength_a, blanks=[blank], solvent="none",
                            keep_curves=False)
    scale = float(result.scales[f"blank_{blank.name}"])
    q = tth_to_q(x, info.wavelength_a)
    intensity, inside = blank.on(q)
    return x[inside], (y - scale * intensity)[inside], None if sigma is None else sigma[inside]


def size(predictor: Predictor, x, y, info: NameInfo) -> dict[str, Any]:
    """The network's estimate of one derived pattern (an error: no size, with the reason)."""
    try:
        e = predictor.predict_pattern(x, y, x_unit="tth", wavelength=info.wavelength_a)
    except ValueError as exc:
        return {"size_nm": None, "size_std_nm": None, "flags": [], "error": str(exc)}
    ok = e.size_nm is not None and math.isfinite(e.size_nm)
    return {"size_nm": float(e.size_nm) if ok else None, "size_std_nm": float(e.size_std_nm) if ok else None,
            "flags": list(e.flags or []), "error": None if ok else (e.message or "no size")}


def summarize(label: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures of one derivation over its rows (file, kind, reference_nm, base_nm, size_nm, size_std_nm, flags)."""
    sized = [r for r in rows if r["size_nm"] is not None]
    err = lambda r: abs(r["size_nm"] - r["reference_nm"])  # noqa: E731
    mae = {kind: (statistics.fmean(err(r) for r in sized if r["kind"] == kind)
                  if any(r["kind"] == kind for r in sized) else None) for kind in ("synchrotron", "laboratory")}
    shifts = [r["size_nm"] - r["base_nm"] for r in sized if r["base_nm"] is not None]
    pulls = [abs(r["size_nm"] - r["base_nm"]) / r["size_std_nm"] for r in sized if r["base_nm"] is not None]
    flags = sorted({f for r in rows for f in r["flags"]})
    return {"derivation": label, "n": len(rows), "n_sized": len(sized),
            "mae_nm": statistics.fmean(map(err, sized)) if sized else None,
            "mae_synchrotron_nm": mae["synchrotron"], "mae_laboratory_nm": mae["laboratory"],
            "within_2_std": sum(err(r) <= 2 * r["size_std_nm"] for r in sized) / len(rows) if rows else None,
            "mean_shift_nm": statistics.fmean(shifts) if shifts else None,
            "max_abs_shift_nm": max(map(abs, shifts)) if shifts else None,
            "max_shift_per_std": max(pulls) if pulls else None,
            "mean_std_nm": statistics.fmean(r["size_std_nm"] for r in sized) if sized else None,
            "flags": flags}


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory", type=Path, metavar="DIR", help="directory of measured pattern files (named as for "
                    "bench_measured.py)")
    ap.add_argument("--solvents", type=Path, default=None, metavar="DIR",
                    help="solvent blanks hexane.xye / toluene.xye for the subtraction (default DIR/../solvents)")
    ap.add_argument("--draws", type=int, default=5, metavar="N",
                    help="draws of each noisy derivation per file (default 5; seeded 0..N-1)")
    ap.add_argument("--model", type=Path, default=None, metavar="PATH", help="model bundle (default: the shipped one)")
    ap.add_argument("--instrument-fwhm", type=float, nargs=2, default=None, metavar=("G", "L"),
                    help="tell the network this instrument resolution (Gaussian, Lorentzian FWHM in 1/A) for the "
                         "synchrotron files (default: unknown, as bench_measured.py sizes them)")
    ap.add_argument("--per-file", action="store_true", help="also print every file's estimate per derivation")
    ap.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the rows and summaries here")
    args = ap.parse_args(argv)
    if args.draws < 1:
        ap.error(f"--draws {args.draws}; accepted: 1 or more")
    files, skipped = find_files(args.directory)
    for path, why in skipped:
        print(f"skipped {path.name}: {why}")
    if not files:
        print(f"no measured files found in {args.directory}; nothing to do")
        return 0
    solvents_dir = args.solvents or args.directory.parent / "solvents"
    plain = Predictor.from_bundle(args.model, device="numpy")
    told = (Predictor.from_bundle(args.model, device="numpy", instrument_fwhm_q=tuple(args.instrument_fwhm))
            if args.instrument_fwhm is not None else plain)
    order = list(dict.fromkeys(d.label for d in derivations(1.0)))  # labels do not depend on the wavelength
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label in order}
    base: dict[str, float | None] = {}
    for file_index, (path, info) in enumerate(files):
        pattern = read_pattern(path)
        x, y = np.asarray(pattern.x, float), np.asarray(pattern.y, float)
        sigma = None if pattern.sigma is None else np.asarray(pattern.sigma, float)
        predictor = told if info.kind == "synchrotron" else plain
        for d_index, d in enumerate(derivations(info.wavelength_a)):
            if info.kind not in d.kinds:
                continue
            for draw in range(args.draws if d.noisy else 1):
                rng = np.random.default_rng([draw, file_index, d_index])
                try:
                    derived = (subtract_solvent(path, info, x, y, sigma, solvents_dir) if d.derive is None
                               else d.derive(x, y, sigma, rng))
                except ValueError as exc:
                    print(f"{path.name}: {d.label}: {exc}", file=sys.stderr)
                    continue
                if derived is None:  # no blank for this file
                    continue
                est = size(predictor, *derived[:2], info)
                if d.label == "as measured":
                    base[path.name] = est["size_nm"]
                rows[d.label].append({"file": path.name, "kind": info.kind, "reference_nm": info.reference_nm,
                                      "draw": draw, "base_nm": base.get(path.name), **est})
    summaries = [summarize(label, rows[label]) for label in order if rows[label]]
    print(f"{'derivation':<42} {'sized':>7} {'MAE':>6} {'synchr':>6} {'lab':>6} {'in 2sd':>6} {'shift':>7} "
          f"{'max|sh|':>7} {'/std':>5} {'std':>6}  flags")
    for s in summaries:
        print(f"{s['derivation']:<42} {s['n_sized']:>3}/{s['n']:<3} {_f(s['mae_nm']):>6} "
              f"{_f(s['mae_synchrotron_nm']):>6} {_f(s['mae_laboratory_nm']):>6} {_f(s['within_2_std'], '.0%'):>6} "
              f"{_f(s['mean_shift_nm'], '+.3f'):>7} {_f(s['max_abs_shift_nm']):>7} {_f(s['max_shift_per_std'], '.1f'):>5} "
              f"{_f(s['mean_std_nm']):>6}  {', '.join(s['flags']) or '-'}")
        if args.per_file:
            for r in rows[s["derivation"]]:
                est = "no size: " + str(r["error"]) if r["size_nm"] is None else \
                    f"{r['size_nm']:.3f} +- {r['size_std_nm']:.3f}"
                print(f"    {r['file']:<44} draw {r['draw']}  ref {r['reference_nm']:.2f}  {est}  "
                      f"{', '.join(r['flags'])}")
    print("(MAE against the reference sizes; in 2sd: share within 2 stated uncertainties, a file without a size "
          "outside; shift: derived minus as-measured estimate of the same file, mean and largest |.|, and the largest "
          "in units of the derived estimate's uncertainty; std: mean stated uncertainty)")
    if args.json:
        args.json.write_text(json.dumps({"summaries": summaries, "rows": rows}, indent=1, default=float))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
