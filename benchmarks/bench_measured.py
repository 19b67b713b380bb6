"""Size accuracy on measured patterns whose reference size is known.

    python benchmarks/bench_measured.py DIR... [--model PATH] [--device numpy|cpu|cuda] [--json OUT.json]

Every pattern file (.xy, .xye, .dat, .chi, .csv) in the directories whose name carries a wavelength and a
reference size is read as 2theta in degrees (`qdots_bluesky.io.read_pattern`, as `qdots predict` does), sized
with the model (`Predictor.predict_pattern`) and compared with the reference size. Naming convention:

    PbS_synchr_wl0p564162A_5p03nm_hexane.xye   wavelength 0.564162 A (`wl<digits>p<digits>`, optional `A`),
                                               reference 5.03 nm (`<digits>p<digits>nm`, number-weighted mean D)

Instrument kind: `_lab_` in the name = laboratory, `_synchr` = synchrotron, otherwise laboratory when the
wavelength exceeds 1.0 A. Pattern files without both numbers are listed as skipped, with the reason.

Prints one row per file (reference D, estimate +- its stated uncertainty, |error|, |error| / uncertainty, the
most probable class and whether it is the class nearest the reference, flags, and the volume-weighted size,
dispersion std and strain where the estimate has them), then the mean absolute error over all files and per
instrument kind, the right-class count, the shares within 2 stated uncertainties and within 0.25 nm, and the
largest error. A file without a size (None/NaN, or unreadable) counts as a miss. Without data (a missing or
empty directory) it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from qdots_bluesky.io import read_pattern
from qdots_bluesky.predictor import Predictor

EXTENSIONS = (".xy", ".xye", ".dat", ".chi", ".csv")
KINDS = ("synchrotron", "laboratory")
#: Estimate attributes of models with a continuous head (None for class-only models): printed and stored when present.
EXTRAS = ("size_volume_nm", "size_volume_std_nm", "dispersion", "dispersion_std", "strain", "strain_std")
_WAVELENGTH = re.compile(r"(?<![A-Za-z0-9])wl(\d+)p(\d+)A?(?![A-Za-z0-9])")
_SIZE = re.compile(r"(?<![A-Za-z0-9])(\d+)p(\d+)nm(?![A-Za-z0-9])")


class NameInfo(NamedTuple):
    """What a file name says: wavelength in A, reference mean diameter in nm, "synchrotron" or "laboratory"."""

    wavelength_a: float
    reference_nm: float
    kind: str


def parse_name(name: str) -> NameInfo:
    """Wavelength (A), reference diameter (nm) and instrument kind from a file name; ValueError says what is missing."""
    wl, size = _WAVELENGTH.search(name), _SIZE.search(name)
    missing = [what for what, m in (("wavelength (wl<digits>p<digits>[A])", wl),
                                    ("reference size (<digits>p<digits>nm)", size)) if m is None]
    if missing:
        raise ValueError("no " + " and no ".join(missing) + " in the file name")
    wavelength = float(f"{wl.group(1)}.{wl.group(2)}")
    if "_lab_" in name:
        kind = "laboratory"
    elif "_synchr" in name:
        kind = "synchrotron"
    else:
        kind = "laboratory" if wavelength > 1.0 else "synchrotron"
    return NameInfo(wavelength, float(f"{size.group(1)}.{size.group(2)}"), kind)


def find_files(directory: Path) -> tuple[list[tuple[Path, NameInfo]], list[tuple[Path, str]]]:
    """The pattern files of ``directory`` with their name information, and the skipped ones with the reason."""
    found, skipped = [], []
    paths = sorted(directory.iterdir()) if directory.is_dir() else []
    for path in (p for p in paths if p.is_file() and p.suffix.lower() in EXTENSIONS):
        try:
            found.append((path, parse_name(path.name)))
        except ValueError as exc:
            skipped.append((path, str(exc)))
    return found, skipped


def _number(value: Any) -> float | None:
    """A finite float, or None for None/NaN/inf."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


def make_row(name: str, info: NameInfo, estimate: Any, classes: np.ndarray, error: str | None = None) -> dict[str, Any]:
    """One table row from a size estimate (None with ``error``: the file was not sized)."""
    reference_class = float(classes[np.argmin(np.abs(classes - info.reference_nm))])
    size = _number(getattr(estimate, "size_nm", None))
    std = _number(getattr(estimate, "size_std_nm", None))
    size_class = _number(getattr(estimate, "size_class_nm", None))
    err = None if size is None else abs(size - info.reference_nm)
    ratio = None if err is None or std is None else (err / std if std > 0 else (0.0 if err == 0 else math.inf))
    return {"file": name, "kind": info.kind, "wavelength_a": info.wavelength_a, "reference_nm": info.reference_nm,
            "size_nm": size, "size_std_nm": std, "abs_error_nm": err, "error_per_std": ratio,
            "size_class_nm": size_class, "reference_class_nm": reference_class,
            "class_right": size_class is not None and abs(size_class - reference_class) < 1e-6,
            "flags": list(getattr(estimate, "flags", None) or []),
            "extras": {k: getattr(estimate, k, None) for k in EXTRAS if getattr(estimate, k, None) is not None},
            "miss": error or ("no size given" if size is None else None)}


def size_file(predictor: Predictor, path: Path, info: NameInfo) -> dict[str, Any]:
    """Read one file as 2theta with the file-name wavelength and size it; a failure becomes a missed row."""
    try:
        pattern = read_pattern(path)
        estimate = predictor.predict_pattern(pattern.x, pattern.y, x_unit="tth", wavelength=info.wavelength_a)
    except ValueError as exc:  # PatternFileError is a ValueError, and so are standardization faults
        return make_row(path.name, info, None, predictor.size_classes_nm, str(exc).removeprefix(f"{path}: "))
    return make_row(path.name, info, estimate, predictor.size_classes_nm)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """MAE over all files and per kind (sized files), right classes, shares within 2 sigma / 0.25 nm, largest error.

    Rows need ``kind``, ``reference_nm``, ``size_nm`` (None: a miss), ``size_std_nm`` and ``class_right``; the shares
    are over all rows, misses counting as outside.
    """
    def error(r: dict[str, Any]) -> float | None:
        size = _number(r["size_nm"])
        return None if size is None else abs(size - r["reference_nm"])

    def mae(subset: list[dict[str, Any]]) -> dict[str, Any]:
        errors = [e for e in map(error, subset) if e is not None]
        return {"n": len(subset), "n_sized": len(errors), "mae_nm": float(np.mean(errors)) if errors else None}

    n = len(rows)
    errors = [error(r) for r in rows]
    within_2 = sum(e is not None and r["size_std_nm"] is not None and e <= 2 * r["size_std_nm"]
                   for e, r in zip(errors, rows))
    sized = [e for e in errors if e is not None]
    return {"n": n, "misses": n - len(sized), "all": mae(rows),
            **{kind: mae([r for r in rows if r["kind"] == kind]) for kind in KINDS},
            "class_right": sum(bool(r["class_right"]) for r in rows),
            "within_2_std": within_2 / n if n else None,
            "within_0p25_nm": sum(e is not None and e <= 0.25 for e in errors) / n if n else None,
            "max_abs_error_nm": max(sized) if sized else None}


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else ("inf" if math.isinf(value) else format(value, fmt))


def print_table(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["file"]) for r in rows)
    print(f"{'file':<{width}}  {'kind':<11}  {'ref D':>6}  {'estimate (nm)':>13}  {'|err|':>5}  {'|err|/std':>9}  "
          f"{'class':>5}  {'right':<5}  flags")
    for r in rows:
        estimate = "miss" if r["size_nm"] is None else f"{r['size_nm']:.2f} ± {_f(r['size_std_nm'])}"
        extras = ", ".join(f"{k} {_f(_number(v), '.4g')}" for k, v in r["extras"].items())
        tail = (", ".join(r["flags"]) or "none") + (f"; {extras}" if extras else "") + \
            (f"; MISS: {r['miss']}" if r["miss"] else "")
        print(f"{r['file']:<{width}}  {r['kind']:<11}  {r['reference_nm']:6.2f}  {estimate:>13}  "
              f"{_f(r['abs_error_nm']):>5}  {_f(r['error_per_std'], '.1f'):>9}  {_f(r['size_class_nm'], '.1f'):>5}  "
              f"{'yes' if r['class_right'] else 'NO':<5}  {tail}")


def print_summary(s: dict[str, Any]) -> None:
    def mae(g: dict[str, Any]) -> str:
        missed = g["n"] - g["n_sized"]
        return ("n/a" if g["mae_nm"] is None else f"{g['mae_nm']:.3f} nm") + \
            f" (n={g['n_sized']}" + (f", {missed} missed)" if missed else ")")

    print("mean absolute error: " + ", ".join(f"{key} {mae(s[key])}" for key in ("all",) + KINDS))
    print(f"nearest class right: {s['class_right']} of {s['n']}; within 2 stated uncertainties: "
          f"{s['within_2_std']:.0%}; within 0.25 nm: {s['within_0p25_nm']:.0%}; "
          f"largest |error|: {_f(s['max_abs_error_nm'], '.3f')} nm")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return _number(value)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="directories of measured pattern files")
    parser.add_argument("--model", type=Path, default=None, metavar="PATH", help="model bundle (default: the shipped model)")
    parser.add_argument("--device", choices=("numpy", "cpu", "cuda"), default="numpy",
                        help="where the network runs: numpy (default, no PyTorch), cpu or cuda (PyTorch)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                        help="also write the per-file rows, the skipped files and the summary to this JSON file")
    args = parser.parse_args(argv)
    files, skipped = [], []
    for directory in args.dirs:
        found, skip = find_files(directory)
        if not found:
            print(f"no measured files found in {directory}" + ("" if directory.is_dir() else " (no such directory)"))
        files += found
        skipped += skip
    for path, reason in skipped:
        print(f"skipped {path.name}: {reason}")
    if not files:
        return 0
    predictor = Predictor.from_bundle(args.model, device=args.device)
    rows = [size_file(predictor, path, info) for path, info in files]
    print_table(rows)
    summary = summarize(rows)
    print_summary(summary)
    if args.json:
        report = {"rows": rows, "skipped": [{"file": str(p), "reason": r} for p, r in skipped], "summary": summary}
        args.json.write_text(json.dumps(_json_safe(report), indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
