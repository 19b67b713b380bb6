"""The settings of the augmentation (:class:`AugmentationSettings`): ranges and probabilities of every effect.

What each setting does is described step by step in :mod:`qdots_bluesky.sim.learning.augment` and the modules of
the steps (:mod:`.augment_draws`, :mod:`.laboratory`, :mod:`.mixing`, :mod:`.noise`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from ..physics.instrument import CU_KA1_A, CU_KA2_A, CU_KA2_RATIO
from .settings import DEFAULT_STRAIN_JITTER, MAX_STRAIN_JITTER

__all__ = ["AugmentationSettings"]


@dataclass
class AugmentationSettings:
    """Ranges and probabilities of every augmentation (see :mod:`.augment`); JSON-ready.

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

