"""Size pattern files: x unit and wavelength from options or the file header, one batched prediction, figures.

``size_files(predictor, paths)`` is what ``qdots predict`` does: every file is read
(:func:`qdots_bluesky.io.read_pattern`), its x unit and wavelength resolved (:func:`resolve_x_unit`,
:func:`resolve_wavelength`), checked (:func:`check_x_range`) and standardized onto the model's grid; the
readable files are sized in one batch; a file that fails gets its reason and the others are still sized.
``plot_files`` saves one Grad-CAM figure per sized file (names from :func:`plot_names`); ``refine_files``
(``qdots predict --refine``) refines every sized file by DSE, seeded by the network's estimate
(:func:`qdots_bluesky.refine.refine_pattern`), and keeps the result beside the estimate.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .io import ACCEPTED_UNITS, Pattern, PatternFileError, read_pattern
from .predictor import Predictor, SizeEstimate
from .standardize import StandardizationReport
from .units import XUnit, check_wavelength

#: The largest Q (1/A) taken as plausible for Q data: even total-scattering measurements end below it, while Q
#: in 1/nm of an ordinary powder pattern (10-150 1/nm) exceeds it.
Q_MAX_PLAUSIBLE = 60.0


@dataclass
class FileResult:
    """The outcome for one file: an estimate, or ``error`` (the reason, without the file name)."""

    path: str
    estimate: SizeEstimate | None = None
    error: str | None = None
    #: What the reader accepts, when the file could not be read as a pattern (print it once per run).
    accepted: str | None = None
    plot: Path | None = None
    row: np.ndarray | None = field(default=None, repr=False)
    report: StandardizationReport | None = field(default=None, repr=False)
    #: The DSE refinement (a :class:`qdots_bluesky.refine.RefinementResult`) where asked for, or why it failed.
    refined: Any = None
    refine_error: str | None = None


def resolve_x_unit(pattern: Pattern, x_unit: str | None) -> str:
    """"tth" or "q": the option ``x_unit`` where given, else the file's declared unit, else "tth".

    Raises ValueError when the option contradicts the unit the file header declares.
    """
    if x_unit is None:
        return pattern.x_unit or "tth"
    x_unit = XUnit.parse(x_unit).value
    if pattern.x_unit is not None and pattern.x_unit != x_unit:
        raise ValueError(f"the file header declares x in {pattern.x_unit_declared!r} ({pattern.x_unit}) but the x unit "
                         f"given is {x_unit!r}; leave the option out to use the header, or correct the header")
    return x_unit


def resolve_wavelength(pattern: Pattern, wavelength: float | None, x_unit: str) -> float | None:
    """Wavelength in A for 2theta data: ``wavelength`` where given, else the file header's; None for Q data.

    Raises ValueError when 2theta data have neither, or the header's value is not an X-ray wavelength.
    """
    if wavelength is not None or x_unit != "tth":
        return wavelength
    found = pattern.wavelength_from_header()
    if found is None:
        raise ValueError("2theta data need a wavelength: pass --wavelength A, put 'wavelength: 0.5646 A' "
                         "in the file header, or use --x-unit q for Q data")
    try:
        check_wavelength(found)
    except ValueError as exc:
        raise ValueError(f"{exc} (read from the file header)") from None
    return found


def check_x_range(x: np.ndarray, x_unit: str) -> None:
    """Raise ValueError with the accepted units when Q data (1/A) span a range that makes no sense."""
    if x_unit != "q" or x.size == 0:
        return
    lo, hi = float(x[0]), float(x[-1])
    if lo < 0.0 or hi > Q_MAX_PLAUSIBLE:
        raise ValueError(f"Q spans {lo:.4g}..{hi:.4g}, which is not Q in 1/A (X-ray powder data lie within "
                         f"0..{Q_MAX_PLAUSIBLE:g} 1/A); a file in 1/nm needs a header line such as "
                         f"'# x_unit: q_nm^-1'; {ACCEPTED_UNITS}")


def standardize_file(path: str | Path, predictor: Predictor, *, x_unit: str | None = None,
                     wavelength: float | None = None) -> tuple[np.ndarray, StandardizationReport]:
    """Read one file and turn it into the predictor's input (standardized onto its grid; for a SAXS + WAXS model the
    two channels on its log grid) and report; raises ValueError (or PatternFileError)."""
    pattern = read_pattern(path)
    unit = resolve_x_unit(pattern, x_unit)
    wl = resolve_wavelength(pattern, wavelength, unit)
    check_x_range(pattern.x, unit)
    rows, reports = predictor.prepare(pattern.x, np.asarray(pattern.y)[None, :], x_unit=unit, wavelength=wl)
    return rows[0], reports[0]


def size_files(predictor: Predictor, paths: Sequence[str | Path], *, x_unit: str | None = None,
               wavelength: float | None = None) -> list[FileResult]:
    """Size every file in one batch; a file that cannot be read or standardized gets ``error`` instead."""
    results = [FileResult(str(p)) for p in paths]
    for result in results:
        try:
            result.row, result.report = standardize_file(result.path, predictor, x_unit=x_unit, wavelength=wavelength)
        except PatternFileError as exc:
            result.error, result.accepted = exc.problem, exc.accepted
        except ValueError as exc:
            result.error = _without_path(str(exc), result.path)
    good = [r for r in results if r.error is None]
    if good:
        X = np.stack([r.row for r in good])
        for result, estimate in zip(good, predictor.predict_standardized(X, [r.report for r in good])):
            result.estimate = estimate
    return results


def refine_files(results: Sequence[FileResult], *, material: str = "PbS", x_unit: str | None = None,
                 wavelength: float | None = None, geometry: str = "capillary", solvent: str | None = None,
                 instrument_fwhm: Sequence[float] | None = None, profile: bool = True,
                 max_diameter_nm: float = 21.0, habit: str = "sphere") -> None:
    """Refine every sized file (DSE, :func:`qdots_bluesky.refine.refine_pattern`) seeded by its network estimate;
    sets ``refined`` or ``refine_error`` of each. ``material``: built-in name or CIF path; ``solvent``: default
    'auto' for a capillary, 'none' for a flat plate; ``instrument_fwhm``: held (Gaussian, Lorentzian) FWHMs (1/A
    capillary, deg flat plate), default refined; ``max_diameter_nm``: largest cluster of the basis; ``habit``: the
    dots' habit or 'auto' (:func:`~qdots_bluesky.refine.refine_pattern`). The wavelength (A) is needed, also for Q
    data (form factors)."""
    from .refine import refine_pattern, refinement_basis

    solvent = solvent or ("none" if geometry == "flat-plate" else "auto")
    bases: dict[float, Any] = {}
    for result in results:
        if result.estimate is None:
            continue
        try:
            pattern = read_pattern(result.path)
            unit = resolve_x_unit(pattern, x_unit)
            wl = wavelength if wavelength is not None else pattern.wavelength_from_header()
            if wl is None:
                raise ValueError("the refinement needs the wavelength (form factors), also for Q data: pass "
                                 "--wavelength A or put 'wavelength: 0.5646 A' in the file header")
            check_wavelength(wl)
            if wl not in bases:  # 'auto' builds one per habit inside the refinement
                bases[wl] = (None if habit == "auto" else
                             refinement_basis(material, wl, max_diameter_nm=max_diameter_nm, habit=habit))
            result.refined = refine_pattern(pattern.x, pattern.y, pattern.sigma, wavelength_a=wl, x_unit=unit,
                                            material=material, geometry=geometry, solvent=solvent,
                                            network=result.estimate, basis=bases[wl], instrument_fwhm=instrument_fwhm,
                                            profile=profile, keep_curves=False, habit=habit)
        except ValueError as exc:
            result.refine_error = _without_path(str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                                                result.path)


def plot_names(plot: str | Path, paths: Sequence[str | Path]) -> list[Path]:
    """Figure path per file: ``plot`` (suffix .png if none) for one file; with several, PNG's stem + '_' + the
    file's stem (+ '_' + its index where two files share a stem)."""
    base = Path(plot)
    base = base if base.suffix else base.with_suffix(".png")
    if len(paths) <= 1:
        return [base] * len(paths)
    names: list[Path] = []
    used: set[Path] = set()
    for index, name in enumerate(paths):
        out = base.with_name(f"{base.stem}_{Path(name).stem}{base.suffix}")
        if out in used:
            out = base.with_name(f"{base.stem}_{Path(name).stem}_{index}{base.suffix}")
        used.add(out)
        names.append(out)
    return names


def plot_files(predictor: Predictor, results: Sequence[FileResult], plot: str | Path, *, layer: int = -1) -> None:
    """Save the Grad-CAM figure of every sized file (``FileResult.plot``; a SAXS + WAXS model's: its input and class
    probabilities); a figure that cannot be written turns
    the file's result into an error that says so (the estimate stays)."""
    from .plotting import plot_prediction

    from .plotting import plot_task_prediction

    good = [i for i, r in enumerate(results) if r.estimate is not None]
    if not good:
        return
    X = np.stack([results[i].row for i in good])
    by_task = not hasattr(predictor, "class_activation_map")  # a SAXS + WAXS model: its input and class probabilities
    cams = None if by_task else predictor.class_activation_map(X, [results[i].report for i in good], layer=layer)
    names = plot_names(plot, [r.path for r in results])
    for k, i in enumerate(good):
        result = results[i]
        try:
            if by_task:
                plot_task_prediction(names[i], predictor.q, X[k], result.estimate, title=result.path)
            else:
                plot_prediction(names[i], predictor.grid.q, X[k], cams[k], result.estimate, title=result.path)
        except OSError as exc:
            result.error = f"sized, but the plot {names[i]} cannot be written ({exc})"
            continue
        result.plot = names[i]


def _without_path(message: str, path: str) -> str:
    """The message without a leading 'PATH: '."""
    for prefix in (f"{path}: ", f"{Path(path)}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def json_record(result: FileResult) -> dict[str, Any]:
    """The JSON object of one file: the estimate's fields (and ``refined``: the refinement's ``to_dict()`` or
    {"error"} where refinement was asked for), or {"file", "error"}."""
    if result.estimate is None:
        return {"file": result.path, "error": result.error}
    out = {"file": result.path, **result.estimate.to_dict()}
    if result.refined is not None:
        out["refined"] = result.refined.to_dict()
    elif result.refine_error is not None:
        out["refined"] = {"error": result.refine_error}
    return json_safe(out)


def json_safe(value: Any) -> Any:
    """``value`` (dicts, lists, numbers) with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
