"""The random parameters of augmented samples and their measured axes (step 1 of :mod:`.augment`).

Synchrotron samples (X04SA-like, the library's wavelength) are measured on
the library's Q grid (1-15 1/A, 5004 points) or a part of it:

* *Q-range truncation*: with probability ``truncate_high_fraction`` the range ends at
  Q_max ~ U[``q_max_range``] (quantized to ``q_max_step``), with probability
  ``truncate_low_fraction`` it starts at Q_min ~ U[``q_min_range``] (quantized to
  ``q_min_step``). The measured points are the library points in [Q_min, Q_max]. A range
  shorter than the standardization's minimum (``MIN_OVERLAP_Q`` = 2 1/A) is widened at its
  low end, so Q_max = 3 comes with Q_min = 1.
* *Coarser steps*: with probability ``coarsen_fraction`` the measured axis is
  ``n_points`` ~ ``n_points_choices`` equispaced points over [Q_min, Q_max]; each point is the
  average of the clean pattern over its bin (the standardization's own cell average), i.e.
  what a detector with that bin width records. The range of coarse samples is quantized more
  coarsely (``coarse_q_max_step``, ``coarse_q_min_step``) to keep the number of axes small.

Laboratory samples (probability ``lab_fraction``) are measured in 2theta from
``lab_tth_start_deg`` to an end ~ U[``lab_tth_end_range``] (quantized to
``lab_tth_end_step``) at ``lab_tth_step_deg`` with Cu K-alpha (see 3); they are neither
truncated nor coarsened further, and are converted to Q with the K-alpha1 wavelength at
standardization, as a user would.

The axis draws (laboratory or not, Q range, point count, 2theta end, monochromator) are shared
by consecutive blocks of ``axis_block_size`` samples; every other draw is per sample. The
distribution of each sample is unchanged, but a batch then has few distinct axes, which
makes augmentation about twice as fast (its cost is per axis group).

All random ranges are quantized, so there is a modest, fixed set of axes, and the
standardization operators (one sparse matrix per axis, cached by ``standardize``) are
built once; the cache is enlarged to hold them all, and :meth:`~qdots_bluesky.sim.learning.augment.Augmenter.warm_up` builds
them up front (about 770 axes, 1130 operators, ~190 MiB and ~1.5 s with the defaults).

Every parameter of a sample is drawn by :func:`draw_parameters`, always the same draws whatever
:meth:`~qdots_bluesky.sim.learning.augment.Augmenter.fixed` fixes; :func:`resolve_axes` turns the Q-range draws
into library index ranges.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...standardize import MIN_OVERLAP_Q
from .augment_settings import AugmentationSettings

__all__ = ["axis_length", "draw_parameters", "fit_low_end", "min_span", "quantize", "resolve_axes"]


def quantize(v: np.ndarray, lo: float, hi: float, step: float) -> np.ndarray:
    """Round to lo + k step within [lo, hi] (hi itself is always a value)."""
    k = np.round((np.asarray(v, dtype=float) - lo) / step)
    return np.minimum(lo + k * step, hi)


def draw_parameters(settings: AugmentationSettings, n: int, rng: np.random.Generator, n_solvents: int,
                    n_families: int) -> dict[str, np.ndarray]:
    """All random parameters for n samples (always the same draws, so fixed() shares them); ``n_solvents``
    solvents to draw from, ``n_families`` reflection families (the free texture draws a scale for each)."""
    s = settings
    u = rng.random((n, 16))
    if s.axis_block_size > 1:  # the axis draws of a block of samples are those of its first sample
        first = (np.arange(n) // s.axis_block_size) * s.axis_block_size
        axis_cols = [0, 6, 7, 8, 9, 10, 11, 14, 15]
        u[:, axis_cols] = u[first][:, axis_cols]
    p: dict[str, np.ndarray] = {}
    p["lab"] = u[:, 0] < s.lab_fraction
    lo, hi = s.fraction_range
    if s.fraction_log_uniform and lo > 0:
        f = np.exp(np.log(lo) + u[:, 1] * (np.log(hi) - np.log(lo)))
    else:
        f = lo + u[:, 1] * (hi - lo)
    p["_fraction_syn"] = f
    p["_fraction_lab"] = s.lab_fraction_range[0] + u[:, 2] * (s.lab_fraction_range[1] - s.lab_fraction_range[0])
    n_solv = max(n_solvents, 1)
    p["solvent_index"] = np.minimum((u[:, 3] * n_solv).astype(int), n_solv - 1)
    lo, hi = s.snr_range
    snr = np.exp(np.log(lo) + u[:, 4] * (np.log(hi) - np.log(lo))) if s.snr_log_uniform else lo + u[:, 4] * (hi - lo)
    p["snr"] = np.where(u[:, 5] < s.noise_free_fraction, np.inf, snr)
    # Q range (synchrotron)
    qmax = s.q_max_range[0] + u[:, 6] * (s.q_max_range[1] - s.q_max_range[0])
    qmin = s.q_min_range[0] + u[:, 8] * (s.q_min_range[1] - s.q_min_range[0])
    p["_trunc_high"] = u[:, 7] < s.truncate_high_fraction
    p["_trunc_low"] = u[:, 9] < s.truncate_low_fraction
    p["_qmax_raw"], p["_qmin_raw"] = qmax, qmin
    coarse = u[:, 10] < s.coarsen_fraction
    choices = np.asarray(s.n_points_choices, dtype=int)
    p["_n_coarse"] = np.where(coarse, choices[np.minimum((u[:, 11] * choices.size).astype(int), choices.size - 1)], 0)
    # background
    has_bg = u[:, 12] < s.background_fraction
    amp = s.background_amplitude_range[0] + u[:, 13] * (s.background_amplitude_range[1] - s.background_amplitude_range[0])
    p["background"] = np.where(has_bg, amp, 0.0)
    v = rng.random((n, 8))
    p["_bg_tilt"] = v[:, 0] - 0.5
    p["_bg_hump_share"] = v[:, 1]
    p["_bg_center"] = s.hump_center_range[0] + v[:, 2] * (s.hump_center_range[1] - s.hump_center_range[0])
    p["_bg_width"] = s.hump_width_range[0] + v[:, 3] * (s.hump_width_range[1] - s.hump_width_range[0])
    # lab
    ends = s.lab_tth_end_range[0] + u[:, 14] * (s.lab_tth_end_range[1] - s.lab_tth_end_range[0])
    p["tth_max"] = quantize(ends, *s.lab_tth_end_range, s.lab_tth_end_step)
    p["monochromator"] = u[:, 15] < s.lab_monochromator_fraction
    n_dir = len(s.po_directions)
    p["_po_dir_index"] = np.minimum((v[:, 4] * n_dir).astype(int), max(n_dir - 1, 0))
    r = s.po_r_range[0] + v[:, 5] * (s.po_r_range[1] - s.po_r_range[0])
    p["po_r"] = np.where(v[:, 6] < s.po_fraction, r, 1.0)
    p["_blank"] = v[:, 7] < s.blank_fraction
    p["_empty"] = v[:, 7] < s.blank_fraction * s.empty_blank_share  # a subset of the blanks
    w = rng.random((n, 4))
    p["_po_family"] = w[:, 0] < s.po_family_fraction
    sigma = s.po_family_sigma_range[0] + w[:, 1] * (s.po_family_sigma_range[1] - s.po_family_sigma_range[0])
    p["_po_family_log_scale"] = sigma[:, None] * rng.standard_normal((n, n_families))
    p["_lab_gauss_fwhm"] = s.lab_gauss_fwhm_deg_range[0] + w[:, 2] * np.subtract(*s.lab_gauss_fwhm_deg_range[::-1])
    p["_lab_lorentz_fwhm"] = s.lab_lorentz_fwhm_deg_range[0] + w[:, 3] * np.subtract(*s.lab_lorentz_fwhm_deg_range[::-1])
    return p


def min_span(h: float) -> int:
    """Library steps that make up the standardization's least Q overlap (plus one)."""
    return int(np.ceil(MIN_OVERLAP_Q / h)) + 1


def fit_low_end(q: np.ndarray, h: float, i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
    """Drawn ranges shorter than the standardization's MIN_OVERLAP_Q (2 1/A) give way at the low end."""
    return np.where(q[i1] - q[i0] < MIN_OVERLAP_Q, np.maximum(i1 - min_span(h), 0), i0)


def resolve_axes(p: dict[str, np.ndarray], fixed_q: dict[str, Any], settings: AugmentationSettings, q: np.ndarray,
                 h: float) -> None:
    """Turn raw draws into measured axes: library index range [i0, i1] and point count per sample (in ``p``).

    ``fixed_q``: q_max, q_min, n_points fixed by the caller (None: drawn); ``q``, ``h``: the library grid and step.
    """
    s = settings
    n = p["lab"].size
    q0, q1 = q[0], q[-1]
    coarse = p["_n_coarse"] > 0
    if fixed_q.get("n_points") is not None:
        coarse = np.full(n, int(fixed_q["n_points"]) > 0)
        p["_n_coarse"] = np.full(n, max(int(fixed_q["n_points"]), 0))
    # quantize: finer steps for native-step samples, coarser for resampled ones
    qmax = np.where(coarse, quantize(p["_qmax_raw"], s.q_max_range[0], s.q_max_range[1], s.coarse_q_max_step),
                    quantize(p["_qmax_raw"], s.q_max_range[0], s.q_max_range[1], s.q_max_step))
    qmin = np.where(coarse, quantize(p["_qmin_raw"], s.q_min_range[0], s.q_min_range[1], s.coarse_q_min_step),
                    quantize(p["_qmin_raw"], s.q_min_range[0], s.q_min_range[1], s.q_min_step))
    qmax = np.where(p["_trunc_high"], qmax, q1)
    qmin = np.where(p["_trunc_low"], qmin, q0)
    if fixed_q.get("q_max") is not None:
        qmax = np.full(n, float(fixed_q["q_max"]))
    if fixed_q.get("q_min") is not None:
        qmin = np.full(n, float(fixed_q["q_min"]))
    i0 = np.clip(np.round((qmin - q0) / h), 0, q.size - 1).astype(int)
    i1 = np.clip(np.round((qmax - q0) / h), 0, q.size - 1).astype(int)
    if fixed_q.get("q_max") is not None or fixed_q.get("q_min") is not None:
        short = (q[i1] - q[i0] < MIN_OVERLAP_Q) & ~p["lab"]
        if short.any() and fixed_q.get("q_max") is not None and fixed_q.get("q_min") is not None:
            raise ValueError(f"Q range {fixed_q['q_min']}-{fixed_q['q_max']} 1/A is shorter than "
                             f"{MIN_OVERLAP_Q} 1/A and cannot be standardized; accepted: q_max - q_min >= 2")
        if short.any() and fixed_q.get("q_max") is None:
            i1 = np.where(short, np.minimum(i0 + min_span(h), q.size - 1), i1)
    i0 = fit_low_end(q, h, i0, i1)
    if np.any(q[i1] - q[i0] < MIN_OVERLAP_Q):
        raise ValueError(f"q_max must be at least {q[0] + MIN_OVERLAP_Q:.3g} 1/A "
                         f"(the standardization needs {MIN_OVERLAP_Q} 1/A of data)")
    p["_i0"], p["_i1"] = i0, i1
    p["q_min"] = q[i0]
    p["q_max"] = q[i1]
    p["n_points"] = np.where(p["_n_coarse"] > 0, p["_n_coarse"], i1 - i0 + 1)


def axis_length(key: tuple, settings: AugmentationSettings) -> int:
    """Number of measured points of a group's axis (("syn", i0, i1, n_coarse) or ("lab", tth_end, mono))."""
    if key[0] == "syn":
        _, i0, i1, n_coarse = key
        return n_coarse if n_coarse > 0 else i1 - i0 + 1
    s = settings
    return int(np.floor((key[1] - s.lab_tth_start_deg) / s.lab_tth_step_deg + 1e-9)) + 1
