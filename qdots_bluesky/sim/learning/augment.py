"""Physics-informed augmentation: clean DSE library patterns -> measured-like, standardized inputs.

Runs on the fly in a training loop (numpy only, vectorized, seeded). Every sample goes through
the same standardization as a prediction (:func:`qdots_bluesky.standardize.standardize_batch`),
from the x axis it would have been measured on. Each effect and its exact definition, in the
order applied:

0. **Lattice parameter** (training only): :meth:`Augmenter.with_lattice_jitter` gives, once per
   epoch, every training pattern its own lattice parameter a (1 + e), e ~ U[-``strain_jitter``,
   ``strain_jitter``], by rescaling Q (:func:`~qdots_bluesky.sim.physics.lattice_jitter.rescale_lattice`:
   the coherent part of the same clusters with every distance times 1 + e; Compton unchanged).
   The library holds each population at 19 lattice parameters from -0.25 to +0.51 % of bulk;
   real dots leave that range (thermal expansion, 2e-5 /K: +0.25 % at 150 C in an in-situ
   synthesis; size- and ligand-dependent strain; a wavelength calibrated 0.5 % off scales Q the
   same way). A network trained on the library's lattice alone reads size from where the peaks are
   and fails when the lattice moves; with +-1 % of jitter (the default) it reads size from peak widths
   and shapes instead (the evaluation report's lattice_change curve measures it for a model).

1. **Measured axis.** Synchrotron samples (X04SA-like, the library's wavelength) are measured on
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
   built once; the cache is enlarged to hold them all, and :meth:`Augmenter.warm_up` builds
   them up front (about 770 axes, 1130 operators, ~190 MiB and ~1.5 s with the defaults).

2. **Nanocrystal pattern** NC = crystal + Compton of the library pattern (electron units). (The
   continuous populations of training, :mod:`~qdots_bluesky.sim.physics.cluster_basis`, come with their
   microstrain and synchrotron instrument profile already applied.)

3. **Laboratory instrument** (lab samples only), on the crystal part before step 4:

   * *Preferred orientation* of a dried film, March-Dollase along a direction drawn from
     ``po_directions`` (conventional indices of the plate normal) with r ~ U[``po_r_range``].
     A DSE pattern is not a list of reflections, so the texture enters as a smooth
     multiplicative correction C(Q) of the crystal (coherent) part; Compton is untextured.
     With the reflection families k of the structure (:func:`~qdots_bluesky.sim.physics.instrument.powder_reflections`), at Q_k/(1+strain),
     their powder intensities I_k = m_k |F_k|^2 / Q_k^2 and Gaussian windows
     w_k(Q) = exp(-(Q - Q_k)^2 / (2 s^2)) whose width s = ``po_window_fwhm_factor`` x the
     expected peak FWHM (Scherrer for spheres, FWHM_Q = 2 pi 1.0747 / D, D the population's
     mean diameter in A), ::

         C(Q) = 1 + min(1, sum_k w_k) * sum_k (P_k - 1) I_k w_k / sum_k I_k w_k

     where P_k is the family average of the March-Dollase factor,
     P_k = mean over equivalent vectors of (r^2 cos^2 a + sin^2 a / r)^(-3/2), a = angle to the
     direction. So C = P_k on an isolated peak, the intensity-weighted mean of the P_k where
     peaks overlap, and 1 in the diffuse regions between peaks. The approximation ignores
     that the diffuse (non-Bragg) intensity under a peak is not textured like the peak.
     In a share ``po_family_fraction`` of the textured samples the P_k are instead free:
     P_k = exp(sigma z_k), z_k ~ N(0, 1) per family, sigma ~ U[``po_family_sigma_range``]. Dried films
     of faceted dots lie on several facets at once; a DSE fit of such films needs a free scale
     per family (Rwp 2.6 % against 5.9 % with one March-Dollase axis).
   * *Instrument profile*: the pattern on the 2theta axis is convolved with a Voigt profile of
     Gaussian FWHM ~ U[``lab_gauss_fwhm_deg_range``] and Lorentzian FWHM ~
     U[``lab_lorentz_fwhm_deg_range``] degrees (:func:`instrument_profile`), constant in 2theta:
     slits, flat-plate aberrations and the optics of benchtop instruments (0.02-0.2 deg). A
     Lorentzian component adds to the dots' own (Lorentzian-like) peak widths rather than in
     quadrature, so left out it makes a network read laboratory peaks as smaller dots.
   * *K-alpha doublet*: I_lab(2theta) = I(Q1) + ``lab_ka2_ratio`` I(Q2), Q_i =
     4 pi sin(theta) / lambda_i with lambda1 = 1.540562 and lambda2 = 1.544390 A (ratio 0.5):
     on the lambda1 Q scale a feature at Q appears again at Q lambda2 / lambda1 (a shoulder on
     the high-Q side of every peak).
   * *Polarization*: (1 + cos^2 2theta_M cos^2 2theta) / (1 + cos^2 2theta_M) with a graphite
     monochromator (2theta_M = ``lab_monochromator_tth_deg``, probability
     ``lab_monochromator_fraction``), else (1 + cos^2 2theta) / 2. The Lorentz factor
     1 / (sin^2 theta cos theta) of the flat-plate LP factor is *not* applied by default
     (``lab_lorentz=False``): a DSE pattern I(Q) already holds it (the 1/Q^2 of the powder
     average and the Jacobian dQ / d2theta ~ cos theta); applying it again would double it.
     :func:`~qdots_bluesky.sim.physics.instrument.lp_factor` gives the full LP factor for other uses.
   * The form factors stay those of the library's wavelength (Pb f' differs at Cu K-alpha).

4. **Solvent**: a solvent S drawn from ``solvents`` (built-in models of
   :func:`~qdots_bluesky.sim.physics.solvents.solvent_pattern`, at the library's wavelength, or at
   K-alpha through step 3 for lab samples) and the measured blanks (``solvent_blanks`` files,
   read with :func:`~qdots_bluesky.sim.physics.solvents.load_solvent_blank`, and blanks passed to the
   Augmenter). As in the reference work, NC and S are each normalised to equal area on the
   measured axis (mean over the measured points = 1) and mixed as ::

       Y = f NC / <NC> + (1 - f) S / <S>

   with the nanocrystal area fraction f ~ log-uniform on ``fraction_range`` (synchrotron) or
   uniform on ``lab_fraction_range`` (dried films have little or no solvent). With probability
   ``blank_fraction`` a sample is a *blank*: f = 0, pure solvent (plus background and noise), the
   negative examples of the network's presence head (metadata ``fraction`` = 0). A share
   ``empty_blank_share`` of the blanks hold no solvent either (an empty capillary or a bare
   substrate: the background of step 5 alone, always on, plus noise; metadata ``solvent`` = "empty").

5. **Background** (probability ``background_fraction``): Y += A [(1 - u)(1 + t x) + u h(Q)] with
   A ~ U[``background_amplitude_range``] (relative to <Y> = 1), x the position in the measured
   range scaled to [-1, 1], t ~ U[-0.5, 0.5], u ~ U[0, 1] and a capillary/glass-like hump
   h(Q) = exp(-(Q - c)^2 / (2 w^2)), c ~ U[``hump_center_range``], w ~ U[``hump_width_range``].

6. **Counting noise.** SNR is the whole-pattern signal-to-noise ratio: the pattern is scaled to
   expected counts N_i = Y_i SNR^2 / mean_i Y_i, so the average measured point holds SNR^2 counts
   and has SNR = N / sqrt(N); then N_i -> Poisson(N_i). This is the figure a whole-pattern SNR
   (mean signal over RMS Poisson noise), as quoted by the reference (122, 46, 24, 14), measures.
   ``snr_reference="peak"`` puts SNR^2 counts on the strongest point instead, a harsher
   definition (3-10x fewer counts). Points with N_i >= ``poisson_normal_above`` (50) are drawn
   from the skewness-corrected normal approximation rint(N + sqrt(N) z + (z^2 - 1) / 6), which
   matches the Poisson mean, variance and skewness (CDF within ~5e-4) at half the cost; set it to
   inf for exact Poisson. SNR ~ log-uniform on ``snr_range``; ``noise_free_fraction`` of samples
   are left noiseless. SNR 122 and 14 put 14 884 and 196 counts on the average point; the noise
   is per measured point, so axes finer than the model grid (lab data) average it down at
   standardization. A synchrotron pattern resampled to coarser steps keeps its exposure
   (``coarse_keeps_exposure``): SNR refers to the library step, and a bin k library steps wide
   holds k times the counts, so the Q-step robustness measures the loss of sampling, not of counts.

7. **Standardization** of (x, counts) with :func:`~qdots_bluesky.standardize.standardize_batch`:
   Q in 1..15, padding a short range with the mean of the 5 outermost points, area-preserving
   interpolation of bin averages (coarse axes: the bin averages of step 1) / cell average onto
   5004 points, mean 1.

The instrument physics of step 3 (intensity factors, K-alpha doublet, Scherrer width, preferred-orientation
correction) lives in :mod:`qdots_bluesky.sim.physics.instrument`, the peak profiles in
:mod:`qdots_bluesky.sim.physics.profiles`; this module draws their parameters and applies them.

Units: Q in 1/A, 2theta in degrees, wavelength in A, diameters in nm.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...lru import LRUCache
from ...standardize import MIN_OVERLAP_Q, QGrid, reserve_operator_cache, standardize_batch
from ...units import tth_to_q
from ..physics.lattice_jitter import mean_squared_form_factor, rescale_lattice
from ..physics.instrument import (CU_KA1_A, CU_KA2_A, CU_KA2_RATIO, flat_plate_factor,
                                  kalpha_doublet_matrix, lp_factor, po_correction, polarization_factor,
                                  powder_reflections, scherrer_fwhm_q)
from ..physics.materials import CrystalStructure, get_structure
from ..physics.profiles import instrument_profile
from ..physics.reflections import family_cosines, family_march_dollase
from ..physics.solvents import load_solvent_blank, solvent_names, solvent_pattern
from .settings import DEFAULT_STRAIN_JITTER, MAX_STRAIN_JITTER

__all__ = [
    "AugmentationSettings",
    "Augmenter",
    "CU_KA1_A",
    "CU_KA2_A",
    "instrument_profile",
    "lp_factor",
    "polarization_factor",
    "po_correction",
    "scherrer_fwhm_q",
]

#: Largest fractional change of the lattice parameter :meth:`Augmenter.with_lattice_change` accepts.
MAX_LATTICE_CHANGE = 0.05
#: Noise is drawn in blocks of rows of about this many points, each with its own generator
#: (seeded from the caller's generator, so results do not depend on the number of threads).
_NOISE_CHUNK = 1 << 16


def _standard_normal_f32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 deviates by the Box-Muller transform of float32 uniforms: 2-3x faster than
    ``rng.standard_normal(dtype=np.float32)`` (numpy's ziggurat); the tails end at 5.8 sigma (the smallest
    float32 uniform), a probability of 1e-8 that counting noise never needs."""
    n = int(np.prod(shape))
    half = (n + 1) // 2
    u = rng.random((2, half), dtype=np.float32)
    radius = np.sqrt(np.float32(-2.0) * np.log1p(-u[0]))  # 1 - u in (0, 1]
    angle = np.float32(2.0 * np.pi) * u[1]
    z = np.empty(2 * half, dtype=np.float32)
    np.multiply(radius, np.cos(angle), out=z[:half])
    np.multiply(radius, np.sin(angle), out=z[half:])
    return z[:n].reshape(shape)


def _poisson_block(lam: np.ndarray, out: np.ndarray, seed: int, normal_above: float) -> None:
    """out[:] = Poisson(lam) with a generator of its own (runs in a worker thread; numpy releases the GIL).

    Where lam >= normal_above the skewness-corrected normal approximation (Cornish-Fisher)
    rint(lam + sqrt(lam) z + (z^2 - 1) / 6) is drawn instead: same mean, variance (+1/12 from the
    rounding) and skewness 1/sqrt(lam) as Poisson, CDF within ~5e-4 of it from lam = 50 on, at
    half the cost of numpy's Poisson sampler.
    """
    rng = np.random.default_rng(seed)
    np.maximum(lam, 0.0, out=lam)
    if not np.isfinite(normal_above):
        out[...] = rng.poisson(lam)
        return
    z = _standard_normal_f32(rng, lam.shape)
    skew = z * z
    skew -= 1.0
    skew *= np.float32(1.0 / 6.0)
    z *= np.sqrt(lam)
    z += lam
    z += skew
    np.rint(z, out=out)
    small = lam < normal_above
    if small.any():
        out[small] = rng.poisson(lam[small])


@dataclass
class AugmentationSettings:
    """Ranges and probabilities of every augmentation (see the module docstring); JSON-ready.

    Ranges are (low, high) pairs; probabilities are per sample. With no solvent at all
    (``solvents`` and ``solvent_blanks`` empty, no blanks passed) every fraction is 1.
    """

    # lattice parameter: each training epoch every training pattern's lattice parameter is changed by a fraction
    # drawn uniformly within +-strain_jitter (Augmenter.with_lattice_jitter; 0 = the library's own lattices only)
    strain_jitter: float = DEFAULT_STRAIN_JITTER
    # nanocrystal area fraction f (1 = no solvent)
    fraction_range: tuple[float, float] = (0.04, 1.0)
    fraction_log_uniform: bool = True
    blank_fraction: float = 0.03
    empty_blank_share: float = 0.25  # share of the blanks with no solvent either: background and noise only
    # solvents: built-in models by name, and measured blanks as (path, x_unit, wavelength_a)
    solvents: list[str] = field(default_factory=lambda: ["hexane", "toluene"])
    solvent_blanks: list[tuple[str, str, float | None]] = field(default_factory=list)
    # Poisson counting noise
    snr_range: tuple[float, float] = (10.0, 150.0)
    snr_log_uniform: bool = True
    snr_reference: str = "mean"
    noise_free_fraction: float = 0.0
    poisson_normal_above: float = 50.0
    # Q-range truncation (synchrotron samples)
    truncate_high_fraction: float = 0.35
    q_max_range: tuple[float, float] = (3.0, 15.0)
    q_max_step: float = 0.25
    truncate_low_fraction: float = 0.2
    q_min_range: tuple[float, float] = (1.0, 1.7)
    q_min_step: float = 0.1
    # coarser steps (synchrotron samples): points over the measured range
    coarsen_fraction: float = 0.3
    # drawn uniformly from the list (a value listed twice is drawn twice as often). Steps of 0.037 1/A or more
    # (fewer than ~380 points over 1-15 1/A) are the coarse-sampling specialist's (training.coarse_augmentation):
    # the main network trains on finer steps, down to 401 points, and spends the rest on fully sampled patterns
    n_points_choices: list[int] = field(default_factory=lambda: [401, 401, 451, 501, 626, 1001, 1251, 2502])
    coarse_keeps_exposure: bool = True
    coarse_q_max_step: float = 1.0
    coarse_q_min_step: float = 0.35
    # smooth additive background
    background_fraction: float = 0.5
    background_amplitude_range: tuple[float, float] = (0.0, 0.1)
    hump_center_range: tuple[float, float] = (1.3, 2.2)
    hump_width_range: tuple[float, float] = (0.3, 0.8)
    # laboratory case: Cu K-alpha, flat plate, dried film
    lab_fraction: float = 0.2
    lab_wavelengths_a: tuple[float, float] = (CU_KA1_A, CU_KA2_A)
    lab_ka2_ratio: float = CU_KA2_RATIO
    lab_tth_start_deg: float = 20.0
    lab_tth_end_range: tuple[float, float] = (80.0, 125.0)
    lab_tth_end_step: float = 5.0
    lab_tth_step_deg: float = 0.02
    lab_monochromator_fraction: float = 0.5
    lab_monochromator_tth_deg: float = 26.57
    lab_lorentz: bool = False
    lab_fraction_range: tuple[float, float] = (0.85, 1.0)
    po_fraction: float = 1.0
    po_directions: list[tuple[int, int, int]] = field(default_factory=lambda: [(1, 1, 0), (1, 1, 1), (1, 0, 0)])
    po_r_range: tuple[float, float] = (0.6, 1.0)
    po_window_fwhm_factor: float = 1.0
    # free texture: in this share of the textured lab samples each reflection family gets its own scale
    # exp(sigma z), z ~ N(0, 1), sigma ~ U[po_family_sigma_range], instead of one March-Dollase axis (dried films of
    # faceted dots: a free scale per family fits them far better than one axis)
    po_family_fraction: float = 0.5
    po_family_sigma_range: tuple[float, float] = (0.0, 0.5)
    # laboratory instrument profile: every lab pattern is convolved in 2theta with a Voigt profile of Gaussian and
    # Lorentzian FWHMs (deg) drawn uniformly in these ranges (slits, flat-plate aberrations, a benchtop's optics)
    lab_gauss_fwhm_deg_range: tuple[float, float] = (0.02, 0.1)
    lab_lorentz_fwhm_deg_range: tuple[float, float] = (0.0, 0.15)
    # execution
    axis_block_size: int = 16
    n_threads: int = 2

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for an inconsistent setting, naming it and what is accepted."""
        def rng_ok(name, lo_min=None, hi_max=None, positive=False):
            lo, hi = getattr(self, name)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name}={getattr(self, name)!r}; accepted: (low, high) with low <= high")
            if (lo_min is not None and lo < lo_min) or (hi_max is not None and hi > hi_max) or (positive and lo <= 0):
                raise ValueError(f"{name}={getattr(self, name)!r}; accepted: within [{lo_min}, {hi_max}]"
                                 + (", positive" if positive else ""))
        rng_ok("fraction_range", 0.0, 1.0, positive=self.fraction_log_uniform)
        rng_ok("lab_fraction_range", 0.0, 1.0)
        rng_ok("snr_range", positive=True)
        rng_ok("q_max_range", positive=True)
        rng_ok("q_min_range", 0.0)
        rng_ok("background_amplitude_range", 0.0)
        rng_ok("hump_width_range", positive=True)
        rng_ok("hump_center_range")
        rng_ok("lab_tth_end_range", 1.0, 179.0)
        rng_ok("po_r_range", positive=True)
        rng_ok("po_family_sigma_range", 0.0, 3.0)
        rng_ok("lab_gauss_fwhm_deg_range", 0.0, 5.0)
        rng_ok("lab_lorentz_fwhm_deg_range", 0.0, 5.0)
        for name in ("blank_fraction", "empty_blank_share", "noise_free_fraction", "truncate_high_fraction", "truncate_low_fraction", "coarsen_fraction",
                     "background_fraction", "lab_fraction", "lab_monochromator_fraction", "po_fraction",
                     "po_family_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v!r}; accepted: a probability in [0, 1]")
        for name in ("q_max_step", "q_min_step", "coarse_q_max_step", "coarse_q_min_step", "lab_tth_end_step",
                     "lab_tth_step_deg", "po_window_fwhm_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r}; accepted: a positive number")
        if not self.poisson_normal_above > 0:
            raise ValueError(f"poisson_normal_above={self.poisson_normal_above!r}; accepted: > 0 (inf: exact Poisson everywhere)")
        if self.snr_reference not in ("peak", "mean"):
            raise ValueError(f"snr_reference={self.snr_reference!r}; accepted: 'peak' or 'mean'")
        if not self.n_points_choices or any(int(n) < 50 for n in self.n_points_choices):
            raise ValueError(f"n_points_choices={self.n_points_choices!r}; accepted: a non-empty list of integers >= 50")
        if self.lab_tth_start_deg >= self.lab_tth_end_range[0]:
            raise ValueError("lab_tth_start_deg must be below lab_tth_end_range")
        if not 0.0 <= self.strain_jitter <= MAX_STRAIN_JITTER:
            raise ValueError(f"strain_jitter={self.strain_jitter!r}; accepted: 0 to {MAX_STRAIN_JITTER:g} (the largest "
                             "fractional change of the lattice parameter; 0 = none)")
        if self.n_threads < 1:
            raise ValueError(f"n_threads={self.n_threads!r}; accepted: an integer >= 1")
        if int(self.axis_block_size) != self.axis_block_size or self.axis_block_size < 1:
            raise ValueError(f"axis_block_size={self.axis_block_size!r}; accepted: an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        def plain(v):
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            return v
        return {k: plain(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AugmentationSettings":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown augmentation settings {sorted(unknown)}; accepted: {sorted(known)}")
        defaults = cls()
        kw = {}
        for k, v in d.items():
            if isinstance(getattr(defaults, k), tuple):
                v = tuple(v)
            elif k == "solvent_blanks":
                v = [(str(x[0]), str(x[1]), None if x[2] is None else float(x[2])) for x in v]
            elif k == "po_directions":
                v = [tuple(int(i) for i in x) for x in v]
            elif k == "n_points_choices":
                v = [int(x) for x in v]
            kw[k] = v
        return cls(**kw)


# --------------------------------------------------------------------------------------------
# The augmenter
# --------------------------------------------------------------------------------------------
def _quantize(v: np.ndarray, lo: float, hi: float, step: float) -> np.ndarray:
    """Round to lo + k step within [lo, hi] (hi itself is always a value)."""
    k = np.round((np.asarray(v, dtype=float) - lo) / step)
    return np.minimum(lo + k * step, hi)


def _direction_label(d) -> str:
    return "".join(str(int(v)) for v in d) if all(0 <= int(v) <= 9 for v in d) else " ".join(str(int(v)) for v in d)


def _parse_direction(d) -> tuple[int, int, int]:
    if isinstance(d, str):
        s = d.strip().strip("<>[](){}")
        parts = s.replace(",", " ").split()
        if len(parts) == 1 and len(parts[0]) == 3 and parts[0].isdigit():
            parts = list(parts[0])
        d = parts
    t = tuple(int(v) for v in d)
    if len(t) != 3 or not any(t):
        raise ValueError(f"orientation direction {d!r}; accepted: three indices like (1, 1, 1) or '111'")
    return t


class Augmenter:
    """Turns library patterns into standardized, measured-like inputs; see the module docstring.

    ``library_q``: the library's equispaced Q grid (1/A); ``crystal``, ``compton``: (patterns, Q)
    electron units; ``settings``: :class:`AugmentationSettings`; ``solvent_blanks``: optional
    measured blanks already read, {name: (q, intensity)} (Q in 1/A), used together with the
    settings' blank files. Keyword-only: ``material`` (name, CIF path or CrystalStructure; for the
    preferred orientation), ``mean_diameter_nm`` and ``strain`` per pattern (window width and
    reflection positions; defaults 5 nm and 0), ``wavelength_a`` of the library (built-in
    solvents are computed there), ``grid``: the model's Q grid.

    Typical use::

        lib = load_library("library.h5")
        aug = Augmenter.from_library(lib, AugmentationSettings())
        aug.warm_up()                                   # optional; before forking DataLoader workers
        X, meta = aug.sample(batch_indices, rng)        # training
        X, meta = aug.fixed(idx, rng, fraction=0.15, snr=14.0, q_max=4.4)   # robustness tests

    ``sample`` may be called from several threads at once (each call with its own generator); the
    noise is drawn in ``settings.n_threads`` threads of the instance, re-created after a fork.
    """

    def __init__(self, library_q: np.ndarray, crystal: np.ndarray, compton: np.ndarray,
                 settings: AugmentationSettings | None = None,
                 solvent_blanks: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, *,
                 material: str | CrystalStructure = "PbS", mean_diameter_nm: np.ndarray | None = None,
                 strain: np.ndarray | None = None, wavelength_a: float = 0.56, grid: QGrid = QGrid()):
        self.settings = settings = settings if settings is not None else AugmentationSettings()
        settings.validate()
        q = np.ascontiguousarray(library_q, dtype=np.float64)
        crystal = np.asarray(crystal, dtype=np.float32)
        compton = np.asarray(compton, dtype=np.float32)
        if q.ndim != 1 or crystal.ndim != 2 or crystal.shape != compton.shape or crystal.shape[1] != q.size:
            raise ValueError(f"library shapes q {q.shape}, crystal {crystal.shape}, compton {compton.shape}; "
                             "accepted: q (n_q,), crystal and compton (n_patterns, n_q)")
        steps = np.diff(q)
        if not (steps > 0).all() or np.ptp(steps) > 1e-6 * steps.mean():
            raise ValueError("library_q must be strictly increasing and equispaced (a library 'q' grid)")
        self.q = q
        self.h = float(steps.mean())
        self.grid = grid
        self.crystal = crystal
        self.compton = compton
        self.total = crystal + compton
        self.n_patterns = crystal.shape[0]
        self.wavelength_a = float(wavelength_a)
        self.lib_grid = QGrid(float(q[0]), float(q[-1]), int(q.size))
        n = self.n_patterns
        self.mean_diameter_nm = np.full(n, 5.0) if mean_diameter_nm is None else np.asarray(mean_diameter_nm, float)
        self.strain = np.zeros(n) if strain is None else np.asarray(strain, float)
        if self.mean_diameter_nm.shape != (n,) or self.strain.shape != (n,):
            raise ValueError(f"mean_diameter_nm and strain need one value per pattern ({n})")
        self.structure = get_structure(material) if isinstance(material, str) else material
        self._form_factor_sq: np.ndarray | None = None  # F(Q) of the lattice jitter, computed when first needed

        # solvents on the library grid (built-in at the library wavelength; blanks as measured)
        self.solvent_names: list[str] = []
        self._solvent_lib: dict[str, np.ndarray] = {}
        self._solvent_is_blank: dict[str, bool] = {}
        known = set(solvent_names())
        for name in settings.solvents:
            if name not in known:
                raise ValueError(f"unknown built-in solvent {name!r}; accepted: {sorted(known)} (or a blank file)")
            self._add_solvent(name, solvent_pattern(name, q, wavelength_a=self.wavelength_a), blank=False)
        for path, x_unit, wl in settings.solvent_blanks:
            qb, ib = load_solvent_blank(path, x_unit=x_unit, wavelength_a=wl)
            self._add_blank(f"blank:{Path(path).stem}", qb, ib)
        for name, (qb, ib) in (solvent_blanks or {}).items():
            self._add_blank(name if str(name).startswith("blank:") else f"blank:{name}", np.asarray(qb, float),
                            np.asarray(ib, float))

        # quantized value sets
        s = settings
        self._q_max_values = np.unique(_quantize(np.arange(s.q_max_range[0], s.q_max_range[1] + s.q_max_step, s.q_max_step),
                                                 s.q_max_range[0], s.q_max_range[1], s.q_max_step))
        self._lab_ends = np.unique(_quantize(np.arange(s.lab_tth_end_range[0], s.lab_tth_end_range[1] + s.lab_tth_end_step,
                                                       s.lab_tth_end_step), *s.lab_tth_end_range, s.lab_tth_end_step))
        # reflections for the preferred orientation (up to the largest lab Q, K-alpha1)
        self._po_cache: dict[tuple, np.ndarray] = {}
        self._lab_cache: dict[tuple, Any] = {}
        self._axis_solvent_cache: LRUCache[np.ndarray] = LRUCache(4 * self.n_axes() * max(len(self.solvent_names), 1))
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = -1
        self._reflections = None
        reserve_operator_cache(self.n_axes() * 2 + 16)

    # ---------------------------------------------------------------- construction helpers
    @classmethod
    def from_library(cls, library, settings: AugmentationSettings | None = None,
                     solvent_blanks: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> "Augmenter":
        """An Augmenter for a :class:`~qdots_bluesky.sim.physics.library.Library` read on its 'q' grid."""
        if getattr(library, "grid", "q") != "q":
            raise ValueError(f"the augmenter needs the library's 'q' grid, got {library.grid!r}; load_library(path, grid='q')")
        lib_settings = getattr(library, "settings", {}) or {}
        return cls(library.q, library.crystal, library.compton, settings, solvent_blanks,
                   material=lib_settings.get("material", "PbS"), mean_diameter_nm=library.mean_diameter_nm,
                   strain=library.strain, wavelength_a=float(lib_settings.get("wavelength_a", 0.56)))

    def _add_solvent(self, name: str, y: np.ndarray, blank: bool) -> None:
        y = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(y)) or y.mean() <= 0:
            raise ValueError(f"solvent {name!r} has no positive intensity on the library Q range")
        self.solvent_names.append(name)
        self._solvent_lib[name] = (y / y.mean()).astype(np.float32)
        self._solvent_is_blank[name] = blank

    def _add_blank(self, name: str, qb: np.ndarray, ib: np.ndarray) -> None:
        # onto the library grid with the standardization itself: cell average, edge padding, mean 1
        y, _ = standardize_batch(qb, ib[None, :], x_unit="q", grid=self.lib_grid)
        self._add_solvent(name, y[0], blank=True)

    def n_axes(self) -> int:
        """Number of distinct measured x axes the settings can produce (each has cached operators)."""
        s = self.settings
        n_qmax = self._q_max_values.size + 1
        n_qmin = int(round((s.q_min_range[1] - s.q_min_range[0]) / s.q_min_step)) + 2
        c_qmax = int(round((s.q_max_range[1] - s.q_max_range[0]) / s.coarse_q_max_step)) + 2
        c_qmin = int(round((s.q_min_range[1] - s.q_min_range[0]) / s.coarse_q_min_step)) + 2
        n_lab = 2 * self._lab_ends.size
        return n_qmax * n_qmin + c_qmax * c_qmin * len(set(s.n_points_choices)) + n_lab

    def warm_up(self) -> int:
        """Build the operators and solvent patterns of every axis the settings can draw; returns their number.

        Takes a few seconds. Call it before forking DataLoader workers: they then share the cached
        operators instead of each building its own.
        """
        s = self.settings
        q0, q1 = float(self.q[0]), float(self.q[-1])
        keys: set[tuple] = set()

        def values(rng_, step, frac, end):
            v = np.unique(_quantize(np.arange(rng_[0], rng_[1] + step, step), rng_[0], rng_[1], step))
            return np.append(v, end) if frac > 0 else np.array([end])

        for ns, qmax_step, qmin_step in (([0], s.q_max_step, s.q_min_step),
                                         (list(s.n_points_choices) if s.coarsen_fraction > 0 else [],
                                          s.coarse_q_max_step, s.coarse_q_min_step)):
            if not ns or s.lab_fraction >= 1.0:
                continue
            hi = values(s.q_max_range, qmax_step, s.truncate_high_fraction, q1)
            lo = values(s.q_min_range, qmin_step, s.truncate_low_fraction, q0)
            a, b = np.meshgrid(lo, hi, indexing="ij")
            i0 = np.clip(np.round((a.ravel() - q0) / self.h), 0, self.q.size - 1).astype(int)
            i1 = np.clip(np.round((b.ravel() - q0) / self.h), 0, self.q.size - 1).astype(int)
            i0 = self._fit_low_end(i0, i1)
            keys.update(("syn", int(x), int(y), int(n)) for x, y in zip(i0, i1) for n in ns)
        if s.lab_fraction > 0:
            monos = [m for m, ok in ((False, s.lab_monochromator_fraction < 1), (True, s.lab_monochromator_fraction > 0)) if ok]
            keys.update(("lab", float(e), m) for e in self._lab_ends for m in monos)
        reserve_operator_cache(2 * len(keys) + 16)
        all_solvents = np.arange(len(self.solvent_names))
        for key in sorted(keys):
            axis = self._synchrotron_axis(key) if key[0] == "syn" else self._lab_axis_info(key)
            y = axis["transform"](self.total[:1])
            standardize_batch(axis["x"], y, x_unit=axis["unit"], wavelength=axis.get("wavelength"), grid=self.grid)
            if self.solvent_names:
                self._solvent_rows(key, all_solvents, axis["transform"])
        return len(keys)

    # ---------------------------------------------------------------- parameter draws
    def _draw(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """All random parameters for n samples (always the same draws, so fixed() shares them)."""
        s = self.settings
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
        n_solv = max(len(self.solvent_names), 1)
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
        p["tth_max"] = _quantize(ends, *s.lab_tth_end_range, s.lab_tth_end_step)
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
        p["_po_family_log_scale"] = sigma[:, None] * rng.standard_normal((n, len(self._reflection_table()[0])))
        p["_lab_gauss_fwhm"] = s.lab_gauss_fwhm_deg_range[0] + w[:, 2] * np.subtract(*s.lab_gauss_fwhm_deg_range[::-1])
        p["_lab_lorentz_fwhm"] = s.lab_lorentz_fwhm_deg_range[0] + w[:, 3] * np.subtract(*s.lab_lorentz_fwhm_deg_range[::-1])
        return p

    @property
    def _min_span(self) -> int:
        """Library steps that make up the standardization's least Q overlap (plus one)."""
        return int(np.ceil(MIN_OVERLAP_Q / self.h)) + 1

    def _fit_low_end(self, i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
        """Drawn ranges shorter than the standardization's MIN_OVERLAP_Q (2 1/A) give way at the low end."""
        return np.where(self.q[i1] - self.q[i0] < MIN_OVERLAP_Q, np.maximum(i1 - self._min_span, 0), i0)

    def _resolve(self, p: dict[str, np.ndarray], fixed_q: dict[str, Any]) -> None:
        """Turn raw draws into measured axes: library index range [i0, i1] and point count per sample."""
        s = self.settings
        n = p["lab"].size
        q0, q1 = self.q[0], self.q[-1]
        coarse = p["_n_coarse"] > 0
        if fixed_q.get("n_points") is not None:
            coarse = np.full(n, int(fixed_q["n_points"]) > 0)
            p["_n_coarse"] = np.full(n, max(int(fixed_q["n_points"]), 0))
        # quantize: finer steps for native-step samples, coarser for resampled ones
        qmax = np.where(coarse, _quantize(p["_qmax_raw"], s.q_max_range[0], s.q_max_range[1], s.coarse_q_max_step),
                        _quantize(p["_qmax_raw"], s.q_max_range[0], s.q_max_range[1], s.q_max_step))
        qmin = np.where(coarse, _quantize(p["_qmin_raw"], s.q_min_range[0], s.q_min_range[1], s.coarse_q_min_step),
                        _quantize(p["_qmin_raw"], s.q_min_range[0], s.q_min_range[1], s.q_min_step))
        qmax = np.where(p["_trunc_high"], qmax, q1)
        qmin = np.where(p["_trunc_low"], qmin, q0)
        if fixed_q.get("q_max") is not None:
            qmax = np.full(n, float(fixed_q["q_max"]))
        if fixed_q.get("q_min") is not None:
            qmin = np.full(n, float(fixed_q["q_min"]))
        i0 = np.clip(np.round((qmin - q0) / self.h), 0, self.q.size - 1).astype(int)
        i1 = np.clip(np.round((qmax - q0) / self.h), 0, self.q.size - 1).astype(int)
        if fixed_q.get("q_max") is not None or fixed_q.get("q_min") is not None:
            short = (self.q[i1] - self.q[i0] < MIN_OVERLAP_Q) & ~p["lab"]
            if short.any() and fixed_q.get("q_max") is not None and fixed_q.get("q_min") is not None:
                raise ValueError(f"Q range {fixed_q['q_min']}-{fixed_q['q_max']} 1/A is shorter than "
                                 f"{MIN_OVERLAP_Q} 1/A and cannot be standardized; accepted: q_max - q_min >= 2")
            if short.any() and fixed_q.get("q_max") is None:
                i1 = np.where(short, np.minimum(i0 + self._min_span, self.q.size - 1), i1)
        i0 = self._fit_low_end(i0, i1)
        if np.any(self.q[i1] - self.q[i0] < MIN_OVERLAP_Q):
            raise ValueError(f"q_max must be at least {self.q[0] + MIN_OVERLAP_Q:.3g} 1/A "
                             f"(the standardization needs {MIN_OVERLAP_Q} 1/A of data)")
        p["_i0"], p["_i1"] = i0, i1
        p["q_min"] = self.q[i0]
        p["q_max"] = self.q[i1]
        p["n_points"] = np.where(p["_n_coarse"] > 0, p["_n_coarse"], i1 - i0 + 1)

    # ---------------------------------------------------------------- public API
    def with_lattice_jitter(self, rng: np.random.Generator, indices: np.ndarray | None = None) -> "Augmenter":
        """A copy of this augmenter in which library patterns ``indices`` (default: all) have each its own lattice
        parameter, changed by a fraction drawn uniformly within +-``settings.strain_jitter``; the others are
        unchanged. Training takes a fresh copy each epoch (module docstring, step 0); with strain_jitter = 0
        this augmenter itself."""
        jitter = self.settings.strain_jitter
        if jitter == 0:
            return self
        rows = np.arange(self.n_patterns) if indices is None else np.unique(np.asarray(indices, dtype=np.int64))
        return self.with_lattice_change(rng.uniform(-jitter, jitter, size=rows.size), rows)

    def with_lattice_change(self, change: np.ndarray | float, indices: np.ndarray | None = None) -> "Augmenter":
        """A copy of this augmenter in which library patterns ``indices`` (default: all) have their lattice
        parameter multiplied by 1 + ``change`` (one fraction for all, or one per index), by rescaling Q
        (:func:`~qdots_bluesky.sim.physics.lattice_jitter.rescale_lattice`; Compton unchanged); the others are unchanged.
        The copy shares the caches and threads and draws patterns as this one does. ``strain`` follows."""
        rows = np.arange(self.n_patterns) if indices is None else np.asarray(indices, dtype=np.int64)
        change = np.broadcast_to(np.asarray(change, dtype=float), rows.shape)
        if not np.all(np.abs(change) <= MAX_LATTICE_CHANGE):
            raise ValueError(f"lattice change {change.min():.4g}..{change.max():.4g}; accepted: within "
                             f"+-{MAX_LATTICE_CHANGE} (a fraction of the lattice parameter)")
        if not change.any():
            return self
        if self._form_factor_sq is None:
            self._form_factor_sq = mean_squared_form_factor(self.structure, self.q, self.wavelength_a)
        crystal = self.crystal.copy()
        crystal[rows] = rescale_lattice(self.q, self.crystal[rows], 1.0 + change, self._form_factor_sq)
        strain = self.strain.copy()
        strain[rows] = (1.0 + strain[rows]) * (1.0 + change) - 1.0
        copy_ = object.__new__(Augmenter)
        copy_.__dict__.update(self.__dict__)
        copy_.crystal, copy_.total, copy_.strain = crystal, crystal + self.compton, strain
        return copy_

    def with_patterns(self, crystal: np.ndarray, compton: np.ndarray, mean_diameter_nm: np.ndarray,
                      strain: np.ndarray) -> "Augmenter":
        """A copy of this augmenter that augments other clean patterns on the same Q grid (e.g. continuous
        populations from :class:`~qdots_bluesky.sim.physics.cluster_basis.ClusterBasis`): ``crystal`` and ``compton``
        (patterns x Q, electron units), the mean diameter (nm, the preferred-orientation windows) and strain
        (reflection positions) of each. It shares the caches, solvents and threads of this one."""
        crystal = np.asarray(crystal, dtype=np.float32)
        compton = np.asarray(compton, dtype=np.float32)
        n = crystal.shape[0]
        mean_diameter_nm = np.asarray(mean_diameter_nm, dtype=float)
        strain = np.asarray(strain, dtype=float)
        if crystal.ndim != 2 or crystal.shape != compton.shape or crystal.shape[1] != self.q.size:
            raise ValueError(f"crystal {crystal.shape} and compton {compton.shape}; accepted: both (patterns, "
                             f"{self.q.size}) on the augmenter's Q grid")
        if mean_diameter_nm.shape != (n,) or strain.shape != (n,):
            raise ValueError(f"mean_diameter_nm and strain need one value per pattern ({n})")
        copy_ = object.__new__(Augmenter)
        copy_.__dict__.update(self.__dict__)
        copy_.crystal, copy_.compton, copy_.total = crystal, compton, crystal + compton
        copy_.n_patterns, copy_.mean_diameter_nm, copy_.strain = n, mean_diameter_nm, strain
        return copy_

    def sample(self, indices: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Augment library patterns ``indices``; returns X float32 (n, grid points), mean 1 per row, and metadata.

        Metadata arrays (one value per sample): fraction, snr (inf: no noise), solvent (str),
        q_min, q_max (measured range, 1/A), n_points (measured points), lab (bool),
        po_direction (str, '' when none), po_r (1 when none), background (amplitude),
        tth_max (lab 2theta end, deg; nan for synchrotron), monochromator (bool), index.
        """
        return self.fixed(indices, rng)

    def fixed(self, indices: np.ndarray, rng: np.random.Generator, *, fraction: float | None = None,
              snr: float | None = None, q_max: float | None = None, q_min: float | None = None,
              n_points: int | None = None, lab: bool | None = None, solvent: str | None = None,
              background: float | None = None, po_direction=None, po_r: float | None = None,
              tth_max: float | None = None, monochromator: bool | None = None,
              instrument_fwhm_deg: tuple[float, float] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Like :meth:`sample` with some parameters fixed for all samples; None ones are drawn as usual.

        The random draws are the same whatever is fixed, so a seed gives the same other parameters.
        Off-values: fraction=1 (no solvent), snr=inf (no noise), q_min / q_max = library ends (no
        truncation), n_points=0 (the library step, no resampling), background=0, po_r=1,
        lab=False, instrument_fwhm_deg=(0, 0). q_min / q_max / n_points apply to synchrotron samples; lab
        samples use ``tth_max`` (deg), ``monochromator`` and ``instrument_fwhm_deg`` (Gaussian, Lorentzian FWHM of
        the instrument profile, deg). ``solvent="empty"`` makes every sample an empty blank
        (no nanocrystals, no solvent: background and noise only).
        """
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_patterns):
            raise ValueError(f"indices must be in 0..{self.n_patterns - 1}")
        n = idx.size
        p = self._draw(n, rng)
        s = self.settings
        if lab is not None:
            p["lab"] = np.full(n, bool(lab))
        p["fraction"] = np.where(p["lab"], p["_fraction_lab"], p["_fraction_syn"])
        p["fraction"] = np.where(p["_blank"], 0.0, p["fraction"])
        if fraction is not None:
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"fraction={fraction!r}; accepted: 0 to 1")
            p["fraction"] = np.full(n, float(fraction))
        if snr is not None:
            if not snr > 0:
                raise ValueError(f"snr={snr!r}; accepted: > 0 (inf for no noise)")
            p["snr"] = np.full(n, float(snr))
        if background is not None:
            p["background"] = np.full(n, float(background))
        if po_r is not None:
            p["po_r"] = np.full(n, float(po_r))
        if tth_max is not None:
            p["tth_max"] = np.full(n, float(tth_max))
        if monochromator is not None:
            p["monochromator"] = np.full(n, bool(monochromator))
        if instrument_fwhm_deg is not None:
            gauss, lorentz = (float(v) for v in instrument_fwhm_deg)
            p["_lab_gauss_fwhm"], p["_lab_lorentz_fwhm"] = np.full(n, gauss), np.full(n, lorentz)
        if solvent == "empty":  # no nanocrystals and no solvent: background and noise only
            p["_blank"] = p["_empty"] = np.ones(n, dtype=bool)
            p["fraction"] = np.zeros(n)
        elif solvent is not None:
            name = solvent if solvent in self.solvent_names else f"blank:{solvent}"
            if name not in self.solvent_names:
                raise ValueError(f"solvent {solvent!r} is not loaded; accepted: {self.solvent_names} or 'empty'")
            p["solvent_index"] = np.full(n, self.solvent_names.index(name))
            p["_empty"] = np.zeros(n, dtype=bool)
        elif fraction is not None and fraction > 0:
            p["_empty"] = np.zeros(n, dtype=bool)
        p["background"] = np.where(p["_empty"], 1.0, p["background"])  # an empty blank is its background
        directions = [tuple(d) for d in s.po_directions]
        if po_direction is not None:
            d = _parse_direction(po_direction)
            if d not in directions:
                directions = directions + [d]
            p["_po_dir_index"] = np.full(n, directions.index(d))
        if not self.solvent_names:
            p["fraction"] = np.ones(n)
            p["_empty"] = np.zeros(n, dtype=bool)
        self._resolve(p, {"q_max": q_max, "q_min": q_min, "n_points": n_points})
        # lab samples: the measured range is the 2theta range at K-alpha1
        if p["lab"].any():
            lab_rows = p["lab"]
            tth_n = np.floor((p["tth_max"] - s.lab_tth_start_deg) / s.lab_tth_step_deg + 1e-9).astype(int) + 1
            p["q_min"] = np.where(lab_rows, tth_to_q(s.lab_tth_start_deg, s.lab_wavelengths_a[0]), p["q_min"])
            p["q_max"] = np.where(lab_rows, tth_to_q(s.lab_tth_start_deg + (tth_n - 1) * s.lab_tth_step_deg,
                                                     s.lab_wavelengths_a[0]), p["q_max"])
            p["n_points"] = np.where(lab_rows, tth_n, p["n_points"])
        p["index"] = idx
        return self._run(idx, p, rng, directions)

    # ---------------------------------------------------------------- the work
    def _run(self, idx: np.ndarray, p: dict[str, np.ndarray], rng: np.random.Generator, directions) -> tuple[np.ndarray, dict]:
        n = idx.size
        lab = p["lab"]
        keys: list[tuple] = []
        for i in range(n):
            if lab[i]:
                keys.append(("lab", float(p["tth_max"][i]), bool(p["monochromator"][i])))
            else:
                keys.append(("syn", int(p["_i0"][i]), int(p["_i1"][i]), int(p["_n_coarse"][i])))
        groups: dict[tuple, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(k, []).append(i)
        group_list = sorted(groups.items(), key=lambda kv: kv[0])
        # counting noise: one generator per block of rows of a group (seeds drawn up front, so the result
        # does not depend on the number of threads); noise of one group is drawn in the pool while the
        # next group is built and earlier groups are standardized
        sizes = [(len(rows), self._axis_length(key)) for key, rows in group_list]
        block_rows = [max(1, _NOISE_CHUNK // cols) for _, cols in sizes]
        n_blocks = sum(-(-r // b) for (r, _), b in zip(sizes, block_rows))
        seeds = iter(rng.integers(0, 2**63 - 1, size=n_blocks))
        pool = self._get_pool()
        pending = []
        for (key, rows), b_rows in zip(group_list, block_rows):
            rows_a = np.asarray(rows)
            if key[0] == "syn":
                Y, axis = self._synchrotron_group(key, idx[rows_a], p, rows_a)
            else:
                Y, axis = self._lab_group(key, idx[rows_a], p, rows_a, directions)
            snr = p["snr"][rows_a]
            ref = Y.max(axis=1) if self.settings.snr_reference == "peak" else Y.mean(axis=1)
            noiseless = ~np.isfinite(snr)
            scale = np.where(noiseless, 0.0, snr**2 / ref)
            if key[0] == "syn" and self.settings.coarse_keeps_exposure:
                # the same exposure binned more coarsely: a bin k library steps wide holds k times the counts
                native = (p["_i1"][rows_a] - p["_i0"][rows_a] + 1).astype(float)
                scale = scale * np.maximum(native / p["n_points"][rows_a], 1.0)
            scale = scale.astype(np.float32)
            lam = Y * scale[:, None]
            noisy = np.empty_like(Y)
            jobs = [(lam[a:a + b_rows], noisy[a:a + b_rows], int(next(seeds)), self.settings.poisson_normal_above)
                    for a in range(0, len(rows), b_rows)]
            futures = [pool.submit(_poisson_block, *job) for job in jobs] if pool is not None else \
                [_poisson_block(*job) for job in jobs]
            pending.append((rows_a, Y, axis, noisy, futures, noiseless))
        X = np.empty((n, self.grid.n_points), dtype=np.float32)
        for rows_a, Y, axis, noisy, futures, noiseless in pending:
            for fut in futures:
                if fut is not None:
                    fut.result()
            if noiseless.any():
                noisy[noiseless] = Y[noiseless]
            X[rows_a], _ = standardize_batch(axis["x"], noisy, x_unit=axis["unit"], wavelength=axis.get("wavelength"),
                                             grid=self.grid)
        meta = {
            "fraction": p["fraction"].astype(float),
            "snr": p["snr"].astype(float),
            "solvent": np.array(["empty" if e else self.solvent_names[j] if self.solvent_names else ""
                                 for j, e in zip(p["solvent_index"], p["_empty"])], dtype=object),
            "q_min": p["q_min"].astype(float),
            "q_max": p["q_max"].astype(float),
            "n_points": p["n_points"].astype(int),
            "lab": lab.astype(bool),
            "po_direction": np.array([_direction_label(directions[j]) if (lab[i] and p["po_r"][i] != 1.0) else ""
                                      for i, j in enumerate(p["_po_dir_index"])], dtype=object),
            "po_r": np.where(lab, p["po_r"], 1.0).astype(float),
            "background": p["background"].astype(float),
            "tth_max": np.where(lab, p["tth_max"], np.nan).astype(float),
            "monochromator": (lab & p["monochromator"]).astype(bool),
            "index": idx.copy(),
        }
        return X, meta

    def _background(self, qx: np.ndarray, p: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray | None:
        """(rows with a background, their background) or None."""
        amp = p["background"][rows]
        on = np.flatnonzero(amp > 0)
        if on.size == 0:
            return None
        r = rows[on]
        qx = qx.astype(np.float32)
        x = (2.0 * (qx - qx[0]) / (qx[-1] - qx[0]) - 1.0)[None, :]
        tilt = p["_bg_tilt"][r, None].astype(np.float32)
        share = p["_bg_hump_share"][r, None].astype(np.float32)
        c = p["_bg_center"][r, None].astype(np.float32)
        w = p["_bg_width"][r, None].astype(np.float32)
        hump = np.exp(-0.5 * ((qx[None, :] - c) / w) ** 2)
        return on, amp[on, None].astype(np.float32) * ((1.0 - share) * (1.0 + tilt * x) + share * hump)

    def _mix(self, nc: np.ndarray, solvent_rows: np.ndarray, p, rows, qx) -> np.ndarray:
        """f NC/<NC> + (1-f) S/<S> + background; nc and solvent_rows are already mean-1 per row."""
        f = p["fraction"][rows, None].astype(np.float32)
        Y = f * nc
        if solvent_rows is not None:
            Y += ((1.0 - f) * ~p["_empty"][rows, None]) * solvent_rows  # an empty blank holds no solvent
        bg = self._background(qx, p, rows)
        if bg is not None:
            Y[bg[0]] += bg[1]
        return Y

    def _synchrotron_axis(self, key) -> dict[str, Any]:
        """Measured axis of a synchrotron group and the map of library-grid patterns onto it (mean 1)."""
        _, i0, i1, n_coarse = key
        if n_coarse == 0:
            qx = self.q[i0:i1 + 1]
            transform = lambda Y: Y[:, i0:i1 + 1] / Y[:, i0:i1 + 1].mean(axis=1, keepdims=True)  # noqa: E731
        else:
            g = QGrid(float(self.q[i0]), float(self.q[i1]), int(n_coarse))
            qx = g.q
            transform = lambda Y: standardize_batch(self.q, Y, x_unit="q", grid=g)[0]  # noqa: E731
        return {"x": qx, "unit": "q", "q": qx, "transform": transform}

    def _synchrotron_group(self, key, lib_idx, p, rows):
        axis = self._synchrotron_axis(key)
        nc = axis["transform"](self.total[lib_idx])
        solv = self._solvent_rows(key, p["solvent_index"][rows], axis["transform"])
        Y = self._mix(nc, solv, p, rows, axis["q"])
        return Y, axis

    def _solvent_rows(self, key, solvent_index, transform) -> np.ndarray | None:
        if not self.solvent_names:
            return None
        vecs = []
        for j in np.unique(solvent_index):
            ck = (key, int(j))
            v = self._axis_solvent_cache.get(ck)
            if v is None:
                v = np.asarray(transform(self._solvent_source(key, int(j))[None, :])[0], dtype=np.float32)
                v = v / v.mean()
                self._axis_solvent_cache.put(ck, v)
            vecs.append((j, v))
        out = np.empty((solvent_index.size, vecs[0][1].size), dtype=np.float32)
        for j, v in vecs:
            out[solvent_index == j] = v
        return out

    def _solvent_source(self, key, j: int) -> np.ndarray:
        """Solvent j on the library grid; for lab axes the built-in models at K-alpha1."""
        name = self.solvent_names[j]
        if key[0] == "lab" and not self._solvent_is_blank[name]:
            lim = 4.0 * np.pi / max(self.settings.lab_wavelengths_a) * (1 - 1e-9)
            sel = self.q < lim
            y = np.zeros(self.q.size)
            y[sel] = solvent_pattern(name, self.q[sel], wavelength_a=self.settings.lab_wavelengths_a[0])
            return y
        return self._solvent_lib[name].astype(np.float64)

    # ---------------------------------------------------------------- lab
    def _lab_axis(self, tth_end: float, mono: bool):
        key = (round(tth_end, 6), mono)
        hit = self._lab_cache.get(key)
        if hit is not None:
            return hit
        s = self.settings
        step = s.lab_tth_step_deg
        n = int(np.floor((tth_end - s.lab_tth_start_deg) / step + 1e-9)) + 1
        tth = s.lab_tth_start_deg + step * np.arange(n)
        lam1, lam2 = s.lab_wavelengths_a
        q1 = tth_to_q(tth, lam1)
        q2 = tth_to_q(tth, lam2)
        if q2[0] < self.q[0] or q1[-1] > self.q[-1]:
            raise ValueError(f"the lab range 2theta {tth[0]:.4g}-{tth[-1]:.4g} deg at {lam1} A needs Q "
                             f"{q2[0]:.4g}-{q1[-1]:.4g} 1/A, beyond the library's {self.q[0]:.4g}-{self.q[-1]:.4g}")
        j0 = max(int(np.floor((q2[0] - self.q[0]) / self.h)) - 1, 0)
        j1 = min(int(np.ceil((q1[-1] - self.q[0]) / self.h)) + 2, self.q.size)
        cols = j1 - j0
        factor = flat_plate_factor(tth, s.lab_monochromator_tth_deg if mono else None, lorentz=s.lab_lorentz)
        W = kalpha_doublet_matrix(q1, q2, s.lab_ka2_ratio, self.q[j0], self.h, cols, factor)
        value = {"tth": tth, "q1": q1, "j0": j0, "j1": j1, "W": W}
        with self._lock:
            self._lab_cache[key] = value
        return value

    def _reflection_table(self):
        if self._reflections is None:
            qmax = float(min(self.q[-1], 4 * np.pi / min(self.settings.lab_wavelengths_a))) + 0.5
            self._reflections = powder_reflections(self.structure, qmax)
        return self._reflections

    def _family_factors(self, direction, r: np.ndarray) -> np.ndarray:
        refl, _, _ = self._reflection_table()
        key = tuple(direction)
        cos = self._po_cache.get(key)
        if cos is None:
            cos = family_cosines(self.structure, refl, direction)
            with self._lock:
                self._po_cache[key] = cos
        return family_march_dollase(self.structure, refl, direction, np.asarray(r, float), cosines=cos)

    def _lab_group(self, key, lib_idx, p, rows, directions):
        _, tth_end, mono = key
        ax = self._lab_axis(tth_end, mono)
        j0, j1, W = ax["j0"], ax["j1"], ax["W"]
        crys = self.crystal[lib_idx, j0:j1]
        r = p["po_r"][rows]
        textured = r != 1.0
        if textured.any():
            refl, rq, rint = self._reflection_table()
            P = np.ones((rows.size, len(refl)))
            for d_i in np.unique(p["_po_dir_index"][rows[textured]]):
                sel = textured & (p["_po_dir_index"][rows] == d_i)
                P[sel] = self._family_factors(directions[int(d_i)], r[sel])
            free = textured & p["_po_family"][rows]
            P[free] = np.exp(p["_po_family_log_scale"][rows[free]])
            sigma = self.settings.po_window_fwhm_factor * scherrer_fwhm_q(self.mean_diameter_nm[lib_idx])
            C = po_correction(self.q[j0:j1], rq, rint, P, sigma, self.strain[lib_idx])
            crys = crys * C
        nc_lib = crys + self.compton[lib_idx, j0:j1]
        nc = np.asarray(W @ np.ascontiguousarray(nc_lib.T, dtype=np.float32)).T
        nc = instrument_profile(nc, self.settings.lab_tth_step_deg, p["_lab_gauss_fwhm"][rows],
                                p["_lab_lorentz_fwhm"][rows])
        nc = nc / nc.mean(axis=1, keepdims=True)
        axis = self._lab_axis_info(key)
        solv = self._solvent_rows(key, p["solvent_index"][rows], axis["transform"])
        Y = self._mix(np.ascontiguousarray(nc, dtype=np.float32), solv, p, rows, ax["q1"])
        return Y, axis

    def _lab_axis_info(self, key) -> dict[str, Any]:
        _, tth_end, mono = key
        ax = self._lab_axis(tth_end, mono)
        j0, j1, W = ax["j0"], ax["j1"], ax["W"]

        def transform(Y):
            out = np.asarray(W @ np.ascontiguousarray(Y[:, j0:j1].T)).T
            return out / out.mean(axis=1, keepdims=True)
        return {"x": ax["tth"], "unit": "tth", "wavelength": self.settings.lab_wavelengths_a[0], "q": ax["q1"],
                "transform": transform}

    # ---------------------------------------------------------------- noise
    def _get_pool(self) -> ThreadPoolExecutor | None:
        if self.settings.n_threads <= 1:
            return None
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child has no pool threads
                self._pool = ThreadPoolExecutor(max_workers=self.settings.n_threads, thread_name_prefix="qdots-augment")
                self._pool_pid = os.getpid()
            return self._pool

    def _axis_length(self, key: tuple) -> int:
        """Number of measured points of a group's axis."""
        if key[0] == "syn":
            _, i0, i1, n_coarse = key
            return n_coarse if n_coarse > 0 else i1 - i0 + 1
        s = self.settings
        return int(np.floor((key[1] - s.lab_tth_start_deg) / s.lab_tth_step_deg + 1e-9)) + 1

    def __getstate__(self):  # picklable for DataLoader workers: no pool, no lock
        d = dict(self.__dict__)
        d["_pool"] = None
        d["_pool_pid"] = -1
        d["_lock"] = None
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._lock = threading.Lock()
        reserve_operator_cache(self.n_axes() * 2 + 16)

