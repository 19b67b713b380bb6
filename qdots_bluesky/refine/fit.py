"""DSE refinement of one pattern: variable projection over a cluster basis.

    I(Q) = s_dots P(Q; D, dispersion, strain, dB[, displacement]) + sum_k s_k blank_k(Q) + sum_j c_j T_j(x)

P from :class:`~qdots_bluesky.refine.model.DotModel` (a flat plate adds one non-negative scale per reflection
family), blank_k measured blanks or built-in solvent models
(:func:`~qdots_bluesky.sim.physics.solvents.solvent_pattern`), T_j Chebyshev polynomials on the fitted Q range
(default order 3). At every step of a bounded Levenberg-Marquardt over the nonlinear parameters
(:func:`~qdots_bluesky.refine.solver.levenberg_marquardt`) the linear ones are solved exactly: background
coefficients free, scales non-negative (:func:`scipy.optimize.nnls` on the Cholesky factor of the projected normal
equations). The Jacobian is Kaufman's variable-projection approximation, with analytic derivatives of the dot
column for a capillary (built on the kept evaluation of the column at the same theta, so a rejected trial step costs
the column alone, ~1/3 of a step with its Jacobian) and forward differences of the dot columns for a flat plate
(Broyden-updated between refreshes). Start: a given estimate (the network's), else a coarse grid over
diameter x dispersion and a scan of the strain. Where the points oversample the peaks (a synchrotron pattern on the
basis step, a laboratory scan in 0.02 deg steps) the fit runs on bins of up to ``MAX_BIN`` consecutive points
within each contiguous run (means of the data, sigma combined, so the statistics are kept; the model read at the
bins' mean Q, which differs from its bin average by its curvature over a bin), then a short polish on every point
gives the optimum of the full data (on the measured set D_N moves by 0.05-0.09 covariance e.s.d.s against no
binning); the dispersion profile below runs on the bins.

Uncertainties: e.s.d.s from the covariance of all parameters (nonlinear and active linear) scaled by the
reduced chi^2. The mean diameter's e.s.d. comes from the *profile* over the dispersion
(:func:`~qdots_bluesky.refine.solver.dispersion_profile`: the dispersion fixed one step of 2 covariance e.s.d.s
(at least 0.005, at most 0.45 of the room to a bound, shrunk where chi^2 rises far beyond chi2_red) to either
side, or two steps on the side with room at a bound, everything else refitted (for a capillary with a parameter
that the step takes beyond a bound held at it and the others re-solved); the parabola through the three
chi^2 values gives the dispersion's e.s.d., where chi^2 rises by chi2_red), and size_std_nm = sqrt(var(D |
dispersion) + (dD/d dispersion x dispersion e.s.d.)^2), so it carries the strong mean-dispersion correlation; the
same for the volume-weighted mean. Every e.s.d. is then multiplied by the residuals' correlation factor
(:mod:`~qdots_bluesky.refine.residuals`; ``correlated_esd=False`` keeps the covariance's), and so is the
combined uncertainty of the ``disagrees_with_network`` flag.

Outcomes: ``no_nanocrystals`` where the dots take a zero scale or do not improve chi^2 by chi2_red x cf^2 x the
chi^2 quantile of their k parameters at the 5-sigma tail ``NO_DOTS_P`` (25 for k = 1, 42 for a capillary's 7, more
for a textured flat plate's scale per reflection family), cf the residuals' correlation factor (a likelihood-ratio
test that counts the residuals of a peak's width as the fewer independent ones they are: a dot component that only
soaks up the misfit of a solvent model leaves correlated residuals and gains little; a threshold that grows with
the parameters rather than a calibrated 5 sigma, since without dots their size and shape are undefined), or sit at
the series' smallest size (a smooth hump); flags in :data:`~qdots_bluesky.refine.result.FLAGS`.

Instrument resolution (:mod:`~qdots_bluesky.refine.model`): a Voigt profile whose Gaussian and Lorentzian FWHMs
(1/A for a capillary, deg 2theta for a flat plate) are refined within 0 to ``INSTRUMENT_BOUNDS`` (started at
``INSTRUMENT_START`` of the bound) or held at given values (``instrument_fwhm``, e.g. a measured standard's).

Units: Q in 1/A, 2theta in degrees, wavelength in A, diameters in nm, dB in A^2, displacement in mm.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.polynomial import chebyshev
from scipy.ndimage import uniform_filter1d
from scipy.stats import chi2 as chi2_dist

from ..sim.physics.cluster_basis import ClusterBasis
from ..sim.physics.solvents import solvent_names, solvent_pattern
from ..units import XUnit
from .assemble import assemble_result
from .basis import material_habit, refinement_basis
from .data import Blank, FitData, data_axes, prepare_data
from .habit_choice import refine_every_habit
from .model import INSTRUMENT_BOUNDS, INSTRUMENT_UNITS, SCHERRER_K_SPHERE, DotModel, Geometry
from .residuals import esd_correlation_factor
from .result import POOR_FIT_RWP, RefinementResult
from .solver import Problem, at_bound, covariance, fit_nonlinear

__all__ = ["refine_pattern", "dots_improve_fit", "DISPERSION_BOUNDS", "POOR_FIT_RWP", "NO_DOTS_P", "dots_threshold", "DISAGREE_FACTOR", "SOLVENT_CHOICES"]

#: Counting-statistics weights come from the first refinement's model (Pearson's chi^2) where the median count is
#: below PEARSON_BELOW (see refine_pattern), and never from fewer than MIN_EXPECTED_COUNTS expected counts.
PEARSON_BELOW = 100.0
MIN_EXPECTED_COUNTS = 0.5
#: ... the first of the two refinements weighting by the counts averaged over this many neighbouring points.
PEARSON_SMOOTH_POINTS = 9
#: Tail probability of the dots' likelihood-ratio test (two-sided 5 sigma): their chi^2 gain (in units of chi2_red x
#: the residuals' correlation factor squared) must exceed the chi^2 quantile of their parameters' count at it.
NO_DOTS_P = 5.733e-7
#: A refined size disagrees with the network where |D - D_net| > DISAGREE_FACTOR x sqrt(esd^2 + std_net^2).
DISAGREE_FACTOR = 2.0
SOLVENT_CHOICES = ("none", "auto")
#: The built-in solvent models ``solvent='auto'`` chooses from.
AUTO_SOLVENTS = ("hexane", "toluene")
#: The coarse start grid reads every COARSE_STRIDE-th point.
COARSE_STRIDE = 4
#: The main fit and the dispersion profile run on bins of up to MAX_BIN points where the peaks (Scherrer FWHM of
#: the start's size) keep BIN_POINTS_PER_FWHM bins; a least-squares polish of at most POLISH_NFEV evaluations on
#: every point follows (from the binned optimum it moves D by a fraction of its e.s.d.).
MAX_BIN = 4
BIN_POINTS_PER_FWHM = 10.0
POLISH_NFEV = 4
COARSE_TOL = 1e-5
#: Bounds of the refined (or held) dispersion, relative std of the log-normal.
DISPERSION_BOUNDS = (0.02, 0.45)
_STRAIN_BOUNDS = (-0.03, 0.03)
_B_BOUNDS = (-1.2, 3.0)
_DISPLACEMENT_BOUNDS = (-1.0, 1.0)
#: A refined instrument width starts at this fraction of its upper bound (a Gaussian's gradient vanishes at 0).
INSTRUMENT_START = 0.1
_INSTRUMENT_KEYS = ("instrument_gauss_fwhm", "instrument_lorentz_fwhm")


def _instrument_fixed(instrument_fwhm: Sequence[float] | None, geometry: Geometry) -> tuple[float, float] | None:
    """Validated fixed instrument FWHMs (Gaussian, Lorentzian) or None (refined)."""
    if instrument_fwhm is None:
        return None
    hi = INSTRUMENT_BOUNDS[geometry.kind]
    unit = INSTRUMENT_UNITS[geometry.kind]
    try:
        g, lor = (float(v) for v in instrument_fwhm)
    except (TypeError, ValueError):
        raise ValueError(f"instrument_fwhm {instrument_fwhm!r}; accepted: two numbers (Gaussian, Lorentzian FWHM "
                         f"in {unit}) or None to refine them") from None
    if not (0.0 <= g <= hi and 0.0 <= lor <= hi):
        raise ValueError(f"instrument FWHMs {g}, {lor} {unit}; accepted: 0 to {hi} {unit} for a {geometry.kind}")
    return g, lor


@functools.lru_cache(maxsize=64)
def dots_threshold(n_parameters: int) -> float:
    """The chi^2 gain (in units of chi2_red x cf^2) the dots must bring with ``n_parameters`` of their own (their
    scales and refined nonlinear parameters): the chi^2 quantile at ``NO_DOTS_P`` (25.0 for one)."""
    return float(chi2_dist.isf(NO_DOTS_P, max(int(n_parameters), 1)))


def dots_improve_fit(dot_scales: np.ndarray, cost_without: float, cost_with: float, chi2_red: float,
                     correlation_factor: float = 1.0, n_parameters: int = 1) -> bool:
    """The test of the dots' presence: some dot column has a positive scale (any counts: on a textured flat plate the
    untextured column may take a zero scale while the reflection families carry the dots) and the dots lower the
    weighted sum of squares by :func:`dots_threshold` (``n_parameters``) x chi2_red x ``correlation_factor``^2 (the
    residuals' correlation factor, :func:`~qdots_bluesky.refine.residuals.esd_correlation_factor`: residuals
    correlated over a peak's width are fewer independent ones, and a misfit the dots only soak up is such). Noise
    alone lowers chi^2 by about the number of parameters that fit it, so more of them need more gain."""
    gain = (cost_without - cost_with) / (chi2_red * max(float(correlation_factor), 1.0) ** 2)
    return bool(np.sum(dot_scales) > 0 and gain >= dots_threshold(n_parameters))


def _start_values(start: Any) -> tuple[dict[str, float], float | None, float | None]:
    """Start values from a mapping or an object with size_nm / dispersion / strain (e.g. a SizeEstimate)."""
    if start is None:
        return {}, None, None
    get = (lambda k: start.get(k)) if isinstance(start, Mapping) else (lambda k: getattr(start, k, None))
    status = get("status")
    out: dict[str, float] = {}
    for key in ("size_nm", "dispersion", "strain", "b_offset", "displacement_mm") + _INSTRUMENT_KEYS:
        v = get(key)
        if v is not None and np.isfinite(float(v)):
            out[key] = float(v)
    if status not in (None, "sized") or "size_nm" not in out:
        return {}, None, None
    std = get("size_std_nm")
    return out, out["size_nm"], (float(std) if std is not None and np.isfinite(float(std)) else None)


def _coarse_start(problem: Problem, lo: np.ndarray, hi: np.ndarray, extra: list[float],
                  dispersions: Sequence[float] = (0.08, 0.16, 0.28)) -> tuple[np.ndarray, int]:
    """Best of a grid over diameter x ``dispersions`` (strain 0), then a scan of the strain; on every
    ``COARSE_STRIDE``-th point (the grid only has to find the basin). Returns (start, model evaluations)."""
    problem = problem.subsampled(COARSE_STRIDE)
    best, best_theta = np.inf, None
    for d in np.geomspace(lo[0] * 1.05, hi[0] * 0.95, 26):
        for disp in dispersions:
            theta = np.array([d, disp, 0.0, 0.0] + extra)
            cost = float(np.sum(problem.residual(theta) ** 2))
            if cost < best:
                best, best_theta = cost, theta
    for e in np.linspace(-0.012, 0.012, 13):
        theta = best_theta.copy()
        theta[2] = e
        cost = float(np.sum(problem.residual(theta) ** 2))
        if cost < best:
            best, best_theta = cost, theta
    return best_theta, problem.nfev


def _bin_factor(data: FitData, size_nm: float) -> int:
    """Points per bin of the main fit: the peaks of dots of ``size_nm`` (Scherrer FWHM in Q, 1/A) keep at least
    ``BIN_POINTS_PER_FWHM`` bins, at most ``MAX_BIN`` points a bin."""
    fwhm = 2.0 * np.pi * SCHERRER_K_SPHERE / (10.0 * size_nm)
    step = float(np.median(np.diff(data.q)))
    return int(np.clip(fwhm / (BIN_POINTS_PER_FWHM * step), 1, MAX_BIN))


def _solvent_columns(solvent: str, data: FitData, wavelength_a: float,
                     model: DotModel) -> tuple[list[str], list[np.ndarray]]:
    if solvent == "none":
        return [], []
    if data.tth is not None and model.geometry.flat_plate:
        qs = model.observed_q(np.zeros(5))
        col = sum(r * solvent_pattern(solvent, q, wl) for q, r, wl in zip(qs, model.ratios, model.wavelengths))
        return [f"solvent_{solvent}"], [col * model.pol]
    return [f"solvent_{solvent}"], [solvent_pattern(solvent, data.q, wavelength_a)]


@dataclass
class _Setup:
    """A refinement ready to fit: the problem on the data's points, bounds and start values (see refine_pattern)."""

    problem: Problem
    data: FitData
    model: DotModel
    basis: ClusterBasis
    names: list[str]
    lo: np.ndarray
    hi: np.ndarray
    x0: np.ndarray
    net_size: float | None
    net_std: float | None
    q_range: tuple[float, float]
    start_nfev: int = 0  # model evaluations of the coarse start search

    def start_cost(self) -> float:
        """Weighted sum of squares at the start values (how ``solvent='auto'`` picks its solvent model)."""
        return float(np.sum(self.problem.residual(self.x0) ** 2))


def _points(x, y, sigma, *, wavelength_a: float, x_unit: str, geometry: Geometry, blanks: Sequence[Blank],
            q_range: tuple[float, float] | None, exclude_tth: Sequence[tuple[float, float]],
            basis: ClusterBasis) -> tuple[FitData, DotModel, tuple[float, float]]:
    """The data's points within the fit range and every blank, the dots' model on them, and the Q range (1/A): the
    part of a refinement's setup that does not depend on the solvent model (``solvent='auto'`` shares it)."""
    if abs(basis.wavelength_a - wavelength_a) > 1e-5:
        raise ValueError(f"basis at {basis.wavelength_a} A for data at {wavelength_a} A; accepted: the same wavelength")
    step = float(basis.q[1] - basis.q[0])
    q_hi = float(basis.q[-1]) / 1.02
    q_lo = float(basis.q[0]) * (1.02 if not geometry.flat_plate else 1.08)
    if q_range is None:
        q_range = (1.0, 15.0) if not geometry.flat_plate else (q_lo, q_hi)
    q_range = (max(float(q_range[0]), q_lo), min(float(q_range[1]), q_hi))
    data = prepare_data(x, y, sigma, x_unit=x_unit, wavelength_a=wavelength_a, q_range=q_range,
                        exclude_tth=exclude_tth, rebin_step=step)
    if geometry.flat_plate and data.tth is None:
        raise ValueError("a flat-plate refinement needs 2theta data (or Q within 4 pi / lambda)")
    for blank in blanks:  # fit only where every blank is measured
        _, inside = blank.on(data.q)
        if inside.sum() < 50:
            raise ValueError(f"blank {blank.name!r} covers Q {blank.q[0]:.3g}-{blank.q[-1]:.3g} 1/A, fewer than 50 "
                             "of the pattern's points; accepted: a blank measured over the pattern's range")
        if not inside.all():
            data = FitData(data.q[inside], None if data.tth is None else data.tth[inside], data.y[inside],
                           data.sigma[inside], data.n_raw)
    return data, DotModel(basis, data.q, wavelength_a, geometry, data.tth), q_range


def _setup(x, y, sigma, *, wavelength_a: float, x_unit: str, material: str, geometry: Geometry,
           blanks: Sequence[Blank], solvent: str, background_order: int, q_range: tuple[float, float] | None,
           exclude_tth: Sequence[tuple[float, float]], start: Any, network: Any, basis: ClusterBasis | None,
           max_diameter_nm: float, instrument: tuple[float, float] | None,
           dispersion: float | None = None,
           points: tuple[FitData, DotModel, tuple[float, float]] | None = None) -> _Setup:
    """The data's points, the model, the linear columns, bounds and start values of one refinement (``points``:
    those of :func:`_points` where already prepared)."""
    if not 0 <= int(background_order) <= 12:
        raise ValueError(f"background_order {background_order!r}; accepted: 0 to 12 (Chebyshev degree)")
    if points is None:
        points = _points(x, y, sigma, wavelength_a=wavelength_a, x_unit=x_unit, geometry=geometry, blanks=blanks,
                         q_range=q_range, exclude_tth=exclude_tth, basis=basis)
    data, model, q_range = points
    names, fixed_cols = [], []
    for blank in blanks:
        names.append(f"blank_{blank.name}")
        fixed_cols.append(blank.on(data.q)[0])
    s_names, s_cols = _solvent_columns(solvent, data, wavelength_a, model)
    names += s_names
    fixed_cols += s_cols
    fixed = np.stack(fixed_cols, axis=1) if fixed_cols else np.zeros((data.q.size, 0))
    xc = 2.0 * (data.q - data.q.min()) / max(np.ptp(data.q), 1e-12) - 1.0
    free = chebyshev.chebvander(xc, int(background_order))
    k_instr = model.instrument_index
    fixed_params = {} if instrument is None else {k_instr: instrument[0] ** 2, k_instr + 1: instrument[1]}
    if dispersion is not None:
        fixed_params[1] = dispersion
    problem = Problem(model, data, fixed, free, fixed_params)

    names_p = model.parameter_names
    w_hi = model.max_instrument_fwhm
    bounds = {"size_nm": (max(1.0, 1.5 * basis.unit_nm), 0.75 * model.max_diameter_nm), "dispersion": DISPERSION_BOUNDS,
              "strain": _STRAIN_BOUNDS, "b_offset": _B_BOUNDS, "displacement_mm": _DISPLACEMENT_BOUNDS,
              "instrument_gauss_fwhm_sq": (0.0, w_hi**2), "instrument_lorentz_fwhm": (0.0, w_hi)}
    lo = np.array([bounds[k][0] for k in names_p])
    hi = np.array([bounds[k][1] for k in names_p])
    defaults = {"dispersion": 0.12, "strain": 0.0, "b_offset": 0.0, "displacement_mm": 0.0,
                "instrument_gauss_fwhm_sq": (INSTRUMENT_START * w_hi) ** 2,
                "instrument_lorentz_fwhm": INSTRUMENT_START * w_hi}
    if instrument is not None:
        defaults.update(instrument_gauss_fwhm_sq=instrument[0] ** 2, instrument_lorentz_fwhm=instrument[1])
    given, _, _ = _start_values(start if start is not None else network)
    _, net_size, net_std = _start_values(network)
    if instrument is not None:  # held values win over a start's
        given = {k: v for k, v in given.items() if k not in _INSTRUMENT_KEYS}
    elif "instrument_gauss_fwhm" in given:
        given["instrument_gauss_fwhm_sq"] = given["instrument_gauss_fwhm"] ** 2
    start_nfev = 0
    if dispersion is not None:  # a held value wins over a start's
        given.pop("dispersion", None)
        defaults["dispersion"] = dispersion
    if given:
        x0 = np.clip(np.array([given.get(k, defaults.get(k)) for k in names_p], dtype=float), lo, hi)
    else:
        x0, start_nfev = _coarse_start(problem, lo, hi, [defaults[k] for k in names_p[4:]],
                                       (dispersion,) if dispersion is not None else (0.08, 0.16, 0.28))
    return _Setup(problem, data, model, basis, names, lo, hi, x0, net_size, net_std, q_range, start_nfev)


def refine_pattern(x: Sequence[float], y: Sequence[float], sigma: Sequence[float] | None = None, *,
                   wavelength_a: float, x_unit: str = "tth", material: str = "PbS",
                   geometry: Geometry | str = "capillary", blanks: Sequence[Blank] = (), solvent: str = "none",
                   background_order: int = 3, q_range: tuple[float, float] | None = None,
                   exclude_tth: Sequence[tuple[float, float]] = (), start: Any = None, network: Any = None,
                   basis: ClusterBasis | None = None, max_diameter_nm: float = 21.0,
                   instrument_fwhm: Sequence[float] | None = None, dispersion: float | None = None,
                   profile: bool = True, keep_curves: bool = True, correlated_esd: bool = True,
                   habit: str | None = None) -> RefinementResult:
    """Refine one pattern (x in 2theta deg or Q 1/A, intensity y, optional sigma) at ``wavelength_a`` (A; the
    K-alpha1 wavelength for a flat plate).

    Weights: 1 / ``sigma`` where given (``weights`` "given"), else counting statistics: sigma^2 = the counts
    ("counts"), or, for counts (non-negative integers) whose median over the Q range is below ``PEARSON_BELOW``, the
    counts the model expects ("model":
    Pearson's chi^2; a first refinement weighted by the counts averaged over ``PEARSON_SMOOTH_POINTS`` neighbours,
    then one weighted by its model and started from it; weights from each point's own count favour the points that
    fluctuate low and bias few counts, e.g. D_N +0.28 nm at 6 nm with most points under 5 counts).

    ``material``: built-in name or CIF path; ``geometry``: 'capillary', 'flat-plate' or a :class:`Geometry`;
    ``blanks``: measured blanks (:class:`~qdots_bluesky.refine.data.Blank`) each with its own scale;
    ``solvent``: a built-in solvent model name, 'auto' or 'none'; 'auto' refines with the one of hexane and
    toluene that fits better at the start values (a start or network given), else refines with both and keeps the
    one whose model with dots has the lower reduced chi^2;
    ``q_range`` (1/A): default 1-15 for a capillary, the data's range for a flat plate, within the basis;
    ``exclude_tth``: 2theta ranges (deg) left out; ``start``: values to start from (mapping or object with
    size_nm, dispersion, strain[, b_offset, displacement_mm], e.g. a previous result's ``to_dict()``);
    ``network``: the network's estimate (mapping or object with status, size_nm, size_std_nm, dispersion,
    strain: a :class:`~qdots_bluesky.predictor.SizeEstimate`): the start where ``start`` is None, and the
    refined size is flagged where it disagrees with it; neither: a coarse grid;
    ``basis``: a prebuilt basis at this wavelength (default :func:`~qdots_bluesky.refine.basis.refinement_basis`);
    ``instrument_fwhm``: (Gaussian, Lorentzian) FWHM of the instrument's Voigt resolution, in Q (1/A) for a
    capillary, in 2theta (deg) for a flat plate, held fixed; None (default): both refined within 0 to
    :data:`~qdots_bluesky.refine.model.INSTRUMENT_BOUNDS`; ``correlated_esd``: e.s.d.s multiplied by the
    residuals' correlation factor (:func:`~qdots_bluesky.refine.residuals.esd_correlation_factor`; default), else
    the covariance's alone (they hold only for a model that leaves independent residuals); ``dispersion``: hold the
    dispersion (relative std of the log-normal) at this value, known from elsewhere (TEM, SAXS): WAXS determines
    it poorly against D_N (see the module docstring), so D_N and its e.s.d. are then those at that dispersion (no
    profile over it; the result says ``dispersion_held``); ``habit``: the nanocrystals' habit, the shape of the
    basis clusters (:data:`~qdots_bluesky.sim.physics.habits.HABITS`: the near-spherical reference series, or a
    faceted one of a cubic structure, same equal-volume diameters; None: the given basis's, else the sphere series),
    or 'auto': refined with every habit, the one whose model with dots has the lowest reduced chi^2 kept, and every
    habit's in ``habit_reduced_chi2`` (a sphere series reads a faceted population's peak profiles as dispersion or
    instrument broadening; see :mod:`~qdots_bluesky.refine.habit_choice`).
    """
    options = dict(wavelength_a=wavelength_a, x_unit=x_unit, material=material, geometry=geometry, blanks=blanks,
                   solvent=solvent, background_order=background_order, q_range=q_range, exclude_tth=exclude_tth,
                   start=start, network=network, basis=basis, max_diameter_nm=max_diameter_nm,
                   instrument_fwhm=instrument_fwhm, dispersion=dispersion, profile=profile, keep_curves=keep_curves,
                   correlated_esd=correlated_esd)
    habit_name = None if habit is None else material_habit(material, habit)
    if habit_name == "auto":
        if basis is not None:
            raise ValueError("habit 'auto' builds a basis per habit; accepted with a prebuilt basis: that basis's "
                             "habit (or no basis)")
        return refine_every_habit(refine_pattern, x, y, sigma, **{k: v for k, v in options.items() if k != "basis"})
    if basis is None:
        options["basis"] = refinement_basis(material, wavelength_a, max_diameter_nm=max_diameter_nm,
                                            habit=habit_name or "sphere")
    elif habit_name is not None and habit_name != basis.habit:
        raise ValueError(f"habit {habit_name!r} with a basis of {basis.habit}; accepted: the basis's habit or none")
    q_raw = None if sigma is not None else _sparse_counts_q(x, y, x_unit, wavelength_a, q_range)
    if q_raw is None:
        result = _refine_pattern(x, y, sigma, **options)
        result.weights = "given" if sigma is not None else "counts"
        return result
    t0 = time.perf_counter()
    # first pass: weights from the counts averaged over a few neighbours (nearly free of each point's fluctuation)
    counts = np.asarray(y, dtype=float)
    smooth = uniform_filter1d(counts, PEARSON_SMOOTH_POINTS, mode="nearest")
    first = _refine_pattern(x, y, np.sqrt(np.maximum(smooth, MIN_EXPECTED_COUNTS)),
                            **dict(options, profile=False, keep_curves=True))
    expected = np.interp(q_raw, first.curves.q, first.curves.calculated)
    second = dict(options, start=first if first.status == "sized" else start)
    chosen = [k.removeprefix("solvent_") for k in first.scales if k.startswith("solvent_")]
    if str(solvent).lower() == "auto" and chosen:  # the first pass chose the solvent model already
        second["solvent"] = chosen[0]
    result = _refine_pattern(x, y, np.sqrt(np.maximum(expected, MIN_EXPECTED_COUNTS)), **second)
    result.weights = "model"
    result.nfev += first.nfev
    result.elapsed_s = time.perf_counter() - t0
    return result


def _sparse_counts_q(x, y, x_unit: str, wavelength_a: float, q_range) -> np.ndarray | None:
    """Q (1/A) of the points x where ``y`` are counts (non-negative integers) whose median over ``q_range`` (default
    1-15 1/A) is below ``PEARSON_BELOW``: data to weight by the model's expected counts; else None (also for input
    that the refinement will reject with its own message)."""
    try:
        counts = np.asarray(y, dtype=float)
        q, _ = data_axes(np.asarray(x, dtype=float), XUnit.parse(x_unit).value, wavelength_a)
    except (TypeError, ValueError):
        return None
    if counts.shape != q.shape or not counts.size or not np.all(np.isfinite(counts)):
        return None
    if np.any(counts < 0) or np.any(counts != np.round(counts)):  # not counts (e.g. normalised to a monitor)
        return None
    lo, hi = q_range if q_range is not None else (1.0, 15.0)
    inside = (q >= lo) & (q <= hi)
    return q if inside.any() and np.median(counts[inside]) < PEARSON_BELOW else None


def _refine_pattern(x, y, sigma, *, wavelength_a: float, x_unit: str, material: str, geometry: Geometry | str,
                    blanks: Sequence[Blank], solvent: str, background_order: int, q_range: tuple[float, float] | None,
                    exclude_tth: Sequence[tuple[float, float]], start: Any, network: Any, basis: ClusterBasis | None,
                    max_diameter_nm: float, instrument_fwhm: Sequence[float] | None, dispersion: float | None,
                    profile: bool, keep_curves: bool, correlated_esd: bool) -> RefinementResult:
    """One refinement with the weights 1 / ``sigma`` (None: sqrt of the counts); see :func:`refine_pattern`."""
    t0 = time.perf_counter()
    geometry = geometry if isinstance(geometry, Geometry) else Geometry(kind=str(geometry))
    instrument = _instrument_fixed(instrument_fwhm, geometry)
    if dispersion is not None:
        given = dispersion
        try:
            dispersion = float(dispersion)
        except (TypeError, ValueError):
            dispersion = float("nan")
        if not DISPERSION_BOUNDS[0] <= dispersion <= DISPERSION_BOUNDS[1]:
            raise ValueError(f"held dispersion {given!r}; accepted: {DISPERSION_BOUNDS[0]} to "
                             f"{DISPERSION_BOUNDS[1]} (relative std of the log-normal), or None to refine it")
    solvent = str(solvent).lower()
    if solvent not in SOLVENT_CHOICES and solvent not in [s.lower() for s in solvent_names()]:
        raise ValueError(f"solvent {solvent!r}; accepted: {', '.join(SOLVENT_CHOICES + tuple(solvent_names()))}")
    common = dict(wavelength_a=wavelength_a, x_unit=x_unit, material=material, geometry=geometry, blanks=blanks,
                  background_order=background_order, q_range=q_range, exclude_tth=exclude_tth, basis=basis,
                  max_diameter_nm=max_diameter_nm, dispersion=dispersion)
    if solvent == "auto" and not _start_values(start if start is not None else network)[0]:
        # no start values: refine with every built-in model and keep the one whose model with dots fits best (a
        # no_nanocrystals result reports the model without dots, whose chi^2 is not comparable)
        results = [_refine_pattern(x, y, sigma, solvent=n, instrument_fwhm=instrument_fwhm, profile=profile,
                                   keep_curves=keep_curves, correlated_esd=correlated_esd, start=None,
                                   network=network, **common)
                   for n in AUTO_SOLVENTS]
        best = min(results, key=lambda r: r.reduced_chi2_with_dots)
        best.nfev = sum(r.nfev for r in results)
        best.elapsed_s = time.perf_counter() - t0
        return best
    options = dict(common, start=start, network=network, instrument=instrument)
    if solvent == "auto":  # the model that fits better at the start values is refined: one refinement, not two
        if not 0 <= int(background_order) <= 12:
            raise ValueError(f"background_order {background_order!r}; accepted: 0 to 12 (Chebyshev degree)")
        points = _points(x, y, sigma, wavelength_a=wavelength_a, x_unit=x_unit, geometry=geometry, blanks=blanks,
                         q_range=q_range, exclude_tth=exclude_tth, basis=basis)  # the same for either model
        setup = min((_setup(x, y, sigma, solvent=n, points=points, **options) for n in AUTO_SOLVENTS),
                    key=_Setup.start_cost)
    else:
        setup = _setup(x, y, sigma, solvent=solvent, **options)
    problem, data, model, basis, names, lo, hi, x0 = (setup.problem, setup.data, setup.model, setup.basis, setup.names,
                                                      setup.lo, setup.hi, setup.x0)
    net_size, net_std, q_range = setup.net_size, setup.net_std, setup.q_range
    n_p, free = model.n_parameters, problem.free
    coarse = problem.binned(_bin_factor(data, float(x0[0])))
    theta, cost = fit_nonlinear(coarse, x0, lo, hi, tol=COARSE_TOL)
    coarse_fit = (coarse, theta, cost)
    if coarse is not problem:  # polish on every point from the binned optimum
        theta, cost = fit_nonlinear(problem, theta, lo, hi, max_nfev=POLISH_NFEV)
    r, scales, cols = problem.solve(theta)
    n_dof = max(data.q.size - (n_p + scales.size + free.shape[1]), 1)
    chi2_red = float(np.sum(r**2)) / n_dof
    cost0 = float(np.sum(problem.solve(theta, dots=False)[0] ** 2))
    correlation = esd_correlation_factor(r)  # of the residuals with dots (the reported ones where the dots are present)
    n_dot_parameters = cols.shape[1] + theta.size - len(problem.fixed_params)  # scales and refined nonlinear ones
    present = dots_improve_fit(scales[:cols.shape[1]], cost0, cost, chi2_red, correlation, n_dot_parameters)
    # a dot component at the series' smallest size (its broadest, least structured patterns, widened further by the
    # dispersion and instrument) is a smooth hump that soaks up a solvent model's misfit as well as any dots would
    present = present and not at_bound(theta, lo, hi, side="lower")[0]
    cov = std_scales = None
    if present:
        cov, std_scales = covariance(problem, theta, scales, cols, chi2_red, hi)
    else:  # report the model without dots: its scales, background and Rwp
        _, rest, _ = problem.solve(theta, dots=False)
        cols = np.zeros_like(cols)
        scales = np.r_[np.zeros(cols.shape[1]), rest]

    result = assemble_result(problem, data, model, basis, theta, scales, cols, names, chi2_red, lo, hi, present,
                       coarse_fit if profile else None, material, wavelength_a, geometry, q_range, keep_curves, cov,
                       std_scales, correlated_esd, correlation if present else None)
    result.reduced_chi2_with_dots = chi2_red  # the same residuals and degrees of freedom as reduced_chi2 where sized
    result.network_size_nm = net_size
    if result.status == "sized" and net_size is not None and net_std is not None:
        combined = float(np.hypot(result.size_std_nm, net_std))
        if abs(result.size_nm - net_size) > DISAGREE_FACTOR * combined:
            result.flags.append("disagrees_with_network")
            result.flag_details["disagrees_with_network"] = (
                f"refined {result.size_nm:.2f} ± {result.size_std_nm:.2f} nm, network {net_size:.2f} ± {net_std:.2f} nm"
                + (f" (the refinement's dispersion held at {dispersion:g})" if dispersion is not None else ""))
    # every model evaluation: start search, binned fit and profile, full-data polish and covariance
    result.nfev = problem.nfev + setup.start_nfev + (coarse.nfev if coarse is not problem else 0)
    result.elapsed_s = time.perf_counter() - t0
    return result
