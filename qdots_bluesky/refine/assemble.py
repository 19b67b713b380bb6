"""A refinement's outcome from its fit: components, Rwp and Rexp, e.s.d.s, flags, texture, curves.

:func:`assemble_result` turns the optimum of :func:`~qdots_bluesky.refine.fit.refine_pattern` into a
:class:`~qdots_bluesky.refine.result.RefinementResult`: the e.s.d.s from the covariance scaled by the reduced chi^2,
for D_N and D_V through the profile over the dispersion
(:func:`~qdots_bluesky.refine.solver.dispersion_profile`), multiplied by the residuals' correlation factor and made
usable (:func:`usable_esds`: never zero, never wider than no knowledge within the bounds); the flags of
:data:`~qdots_bluesky.refine.result.FLAGS`.

Units as in :mod:`~qdots_bluesky.refine.fit`.
"""
from __future__ import annotations

import numpy as np

from .model import INSTRUMENT_UNITS
from .residuals import esd_correlation_factor
from .result import FLAGS, POOR_FIT_NOISE_RATIO, POOR_FIT_RWP, RefinementCurves, RefinementResult, is_poor_fit
from .solver import at_bound, dispersion_profile, volume_diameter

__all__ = ["assemble_result", "usable_esds", "gauss_esd", "no_knowledge_esd"]


def gauss_esd(g: float, var_sq: float) -> float:
    """e.s.d. of a Gaussian FWHM g refined as g^2 with variance ``var_sq``: sigma(g^2) / (2 g), capped by
    sqrt(sigma(g^2)) (the width whose square is one e.s.d.: the scale of the uncertainty near g = 0)."""
    s = float(np.sqrt(max(var_sq, 0.0)))
    return min(s / (2.0 * g), np.sqrt(s)) if g > 0 else float(np.sqrt(s))


def no_knowledge_esd(span: float) -> float:
    """The standard deviation of a value known only to lie within a range ``span`` wide (uniform): span / sqrt 12."""
    return float(span) / np.sqrt(12.0)


def usable_esds(esds: tuple[float, float, float], step_nm: float, spans: tuple[float, float, float],
                 dispersion_held: bool = False) -> tuple[tuple[float, float, float], bool]:
    """The e.s.d.s of (D_N, D_V, dispersion) made usable: a zero or non-finite one (a population on one cluster of
    the series is flat in size and dispersion) becomes the series' diameter step / sqrt 12 for the sizes and the
    dispersion's range / sqrt 12, one wider than its parameter's range (``spans``) that range / sqrt 12 (the
    spread of no knowledge within the bounds). Returns them and whether any changed. A held dispersion keeps its 0."""
    out, limited = [], False
    for k, (esd, span) in enumerate(zip(esds, spans)):
        ignorance = no_knowledge_esd(span)
        if k == 2 and dispersion_held:
            value = esd
        elif not np.isfinite(esd) or esd <= 0.0:
            value = no_knowledge_esd(step_nm) if k < 2 else ignorance
        else:
            value = min(esd, ignorance)
        limited = limited or value != esd
        out.append(float(value))
    return (out[0], out[1], out[2]), limited


def assemble_result(problem, data, model, basis, theta, scales, cols, names, chi2_red, lo, hi, present, profile_fit,
              material, wavelength_a, geometry, q_range, keep_curves, cov, std_scales,
              correlated_esd: bool = True, correlation_factor: float | None = None) -> RefinementResult:
    """The :class:`RefinementResult` of a fit: components and Rwp, the e.s.d.s (covariance, the profile over the
    dispersion unless ``profile_fit`` is None, the residuals' correlation factor, :func:`usable_esds`), flags,
    texture and curves; ``present``: the dots passed the presence test (else the model without dots is reported);
    ``correlation_factor``: the residuals' correlation factor where already known for these residuals."""
    n_dot = cols.shape[1]
    bg_coef = problem.background(scales, cols)
    dots_calc = cols @ scales[:n_dot]
    fixed_unw = problem.fixed_w / problem.w[:, None]
    comp = {"dots": dots_calc}
    for j, name in enumerate(names):
        comp[name] = fixed_unw[:, j] * scales[n_dot + j]
    comp["background"] = (problem.free_w / problem.w[:, None]) @ bg_coef
    calc = sum(comp.values())
    wr = (data.y - calc) / data.sigma
    rwp = float(np.sqrt(np.sum(wr**2) / np.sum((data.y / data.sigma) ** 2)))
    n_dof = max(data.q.size - (theta.size + scales.size + bg_coef.size), 1)
    rexp = float(np.sqrt(n_dof / np.sum((data.y / data.sigma) ** 2)))
    if correlation_factor is None:
        correlation_factor = esd_correlation_factor(wr)
    inflate = correlation_factor if correlated_esd else 1.0
    flags, details = [], {}
    nan = float("nan")
    scale_names = ["dots"] + names
    texture = None
    if present:
        std = np.sqrt(np.maximum(np.diag(cov), 0.0))
        std[list(problem.fixed_params)] = 0.0  # held, not refined (the covariance leaves rounding there)
        volume = volume_diameter(basis, theta)
        h = 1e-4 * theta[:2]
        grad = np.array([(volume_diameter(basis, theta + np.r_[h[0], np.zeros(theta.size - 1)]) - volume) / h[0],
                         (volume_diameter(basis, theta + np.r_[0.0, h[1], np.zeros(theta.size - 2)]) - volume) / h[1]])
        cond_d = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1] if cov[1, 1] > 0 else cov[0, 0]
        profile = profile_fit is not None and 1 not in problem.fixed_params  # no profile over a held dispersion
        prof = (dispersion_profile(*profile_fit, float(std[1]), lo, hi, chi2_red, basis, cov=cov) if profile
                else None)
        if prof is None:
            if profile:
                flags.append("profile_failed")
            size_std, disp_std = float(std[0]), float(std[1])
            vol_std = float(np.sqrt(max(grad @ cov[:2, :2] @ grad, 0.0)))
        else:
            disp_std, slope_d, slope_v = prof
            size_std = float(np.sqrt(max(cond_d, 0.0) + (slope_d * disp_std) ** 2))
            vol_std = float(np.sqrt(max(grad[0] ** 2 * max(cond_d, 0.0), 0.0) + (slope_v * disp_std) ** 2))
        size_std, vol_std, disp_std = size_std * inflate, vol_std * inflate, disp_std * inflate
        (size_std, vol_std, disp_std), limited = usable_esds(
            (size_std, vol_std, disp_std), basis.unit_nm, (hi[0] - lo[0], hi[0] - lo[0], hi[1] - lo[1]),
            dispersion_held=1 in problem.fixed_params)
        if prof is None and profile and size_std < no_knowledge_esd(basis.unit_nm):
            # without the profile the covariance's D_N e.s.d. ignores the size-dispersion trade, which a population on
            # a few clusters of the series makes non-quadratic: no finer than the series' step
            size_std, limited = no_knowledge_esd(basis.unit_nm), True
        if limited:
            flags.append("esd_limited")
        std = std * inflate
        std_scales = std_scales * inflate
        bound = at_bound(theta, lo, hi)
        for i, flag in enumerate(("size_at_bound", "dispersion_at_bound", "strain_at_bound", "b_offset_at_bound")):
            # a held value is the user's, not a bound the fit ran into
            if i not in problem.fixed_params and bound[i]:
                flags.append(flag)
        k = model.instrument_index
        if k not in problem.fixed_params and at_bound(theta, lo, hi, side="upper")[k:k + 2].any():
            flags.append("instrument_at_bound")
        values = dict(status="sized", size_nm=float(theta[0]), size_std_nm=size_std, size_volume_nm=volume,
                      size_volume_std_nm=vol_std, dispersion=float(theta[1]), dispersion_std=disp_std,
                      strain=float(theta[2]), strain_std=float(std[2]), b_offset=float(theta[3]),
                      b_offset_std=float(std[3]))
        if model.families:  # each family's scale over their powder-intensity-weighted mean: 1 for a powder
            fam = scales[1:1 + len(model.families)]
            weights = model.family_intensities
            base = float(weights @ fam / weights.sum()) if weights.sum() > 0 else 0.0
            texture = {label: float(fam[k] / base) if base > 0 else nan for k, label in enumerate(model.families)}
    else:
        std_scales = np.full(scales.size, nan)
        values = dict(status="no_nanocrystals", size_nm=nan, size_std_nm=nan, size_volume_nm=nan,
                      size_volume_std_nm=nan, dispersion=nan, dispersion_std=nan, strain=nan, strain_std=nan,
                      b_offset=nan, b_offset_std=nan)
        std = np.full(theta.size, nan)
    if is_poor_fit(rwp, rexp):
        flags.append("poor_fit")
    details.update({f: FLAGS[f] for f in flags if f not in details})
    if "poor_fit" in flags:
        details["poor_fit"] = (f"Rwp {100 * rwp:.1f} % > {100 * POOR_FIT_RWP:.0f} % and > {POOR_FIT_NOISE_RATIO:g} x "
                               f"Rexp {100 * rexp:.1f} %")
    keep = [0] + list(range(n_dot, scales.size))
    curves = None
    if keep_curves:
        curves = RefinementCurves(q=data.q, tth=data.tth, observed=data.y, sigma=data.sigma, calculated=calc,
                                  components=comp)
    flat = geometry.flat_plate
    k = model.instrument_index
    refined_instrument = k not in problem.fixed_params
    gauss = float(np.sqrt(max(theta[k], 0.0)))
    widest = no_knowledge_esd(model.max_instrument_fwhm)  # no wider than no knowledge within 0 to the bound
    instrument_values = dict(
        instrument_gauss_fwhm=gauss, instrument_lorentz_fwhm=float(theta[k + 1]),
        instrument_gauss_fwhm_std=min(gauss_esd(gauss, float(std[k]) ** 2), widest) if refined_instrument else 0.0,
        instrument_lorentz_fwhm_std=min(float(std[k + 1]), widest) if refined_instrument else 0.0,
        instrument_unit=INSTRUMENT_UNITS[geometry.kind], instrument_refined=refined_instrument,
        dispersion_held=1 in problem.fixed_params)
    return RefinementResult(**instrument_values,
        **values, displacement_mm=float(theta[4]) if flat and present else None,
        displacement_std_mm=float(std[4]) if flat and present else None,
        scales={scale_names[i]: float(scales[k]) for i, k in enumerate(keep)},
        scales_std={scale_names[i]: float(std_scales[k]) for i, k in enumerate(keep)},
        texture=texture, rwp=rwp, rwp_expected=rexp, esd_correlation_factor=correlation_factor,
        esd_correlated=bool(correlated_esd),
        reduced_chi2=float(np.sum(wr**2)) / n_dof, n_points=int(data.q.size),
        material=str(material), wavelength_a=float(wavelength_a), geometry=geometry.kind,
        q_range=(float(data.q.min()), float(data.q.max())), flags=flags, flag_details=details, curves=curves,
        habit=basis.habit)
