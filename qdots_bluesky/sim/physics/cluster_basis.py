"""Per-cluster DSE patterns of a cluster series, and population patterns drawn from continuous distributions.

The library (:mod:`~qdots_bluesky.sim.physics.library`) holds populations on a grid (17 mean sizes x 4 dispersions
x 19 lattice parameters). That grid is a sampling of a continuous space: every population pattern is a
number-weighted sum of the patterns of the series clusters (n^3 cells, D_n = n x unit, 0.4638 n nm for PbS).
A :class:`ClusterBasis` holds those per-cluster patterns once (coherent and Compton parts, at bulk lattice);
then a batch of populations with any mean diameter, dispersion and lattice parameter is one matrix product
(log-normal weights x basis) and one Q rescaling per row (:func:`~qdots_bluesky.sim.physics.lattice_jitter.rescale_lattice`).

Population targets (what a network trained on these patterns learns to report):

- ``mean_diameter_nm``: the mean of the log-normal number distribution (the quantity DSE fits report);
- ``volume_diameter_nm``: the volume-weighted mean diameter of the discrete weights, sum w D^4 / sum w D^3
  (the mean diameter weighted by each cluster's share of the scattering volume; what a WAXS pattern
  determines best, since mean and dispersion are strongly correlated in a fit);
- ``dispersion``: relative standard deviation of the log-normal; ``strain``: fractional lattice change.

Units: Q in 1/A, diameters in nm, patterns in electron units per nanocrystal.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.special import ndtr

from .clusters import equal_volume_diameter_nm
from .distribution import WEIGHT_CUTOFF, check_distribution
from .habits import check_habit
from .lattice_jitter import mean_squared_form_factor, rescale_lattice
from .materials import CrystalStructure, get_structure
from .population import series_pair_table
from .profiles import instrument_profile, microstrain_broadening

__all__ = ["ClusterBasis", "PopulationRanges", "build_cluster_basis", "lognormal_weight_matrix",
           "population_targets", "draw_populations"]


@dataclass
class ClusterBasis:
    """Patterns of the series clusters n = 1..n_max on one Q grid (rows: clusters), at bulk lattice."""

    q: np.ndarray  # (Q,) 1/A
    n: np.ndarray  # (clusters,) series indices
    unit_nm: float  # equal-volume diameter of cluster n = 1; D_n = n unit_nm
    crystal: np.ndarray  # (clusters, Q) coherent part, electron units per cluster
    compton: np.ndarray  # (clusters, Q) incoherent part
    structure: CrystalStructure
    wavelength_a: float
    habit: str = "sphere"  # the clusters' habit (:mod:`~qdots_bluesky.sim.physics.habits`)

    @property
    def diameter_nm(self) -> np.ndarray:
        return self.n * self.unit_nm

    def form_factor_sq(self) -> np.ndarray:
        """F(Q) of the lattice rescaling (site-averaged |f|^2 at the basis wavelength)."""
        if not hasattr(self, "_f_sq"):
            self._f_sq = mean_squared_form_factor(self.structure, self.q, self.wavelength_a)
        return self._f_sq

    def patterns(self, mean_nm: np.ndarray, dispersion: np.ndarray, strain: np.ndarray,
                 microstrain: np.ndarray | None = None, instrument_gauss_fwhm_q: np.ndarray | None = None,
                 instrument_lorentz_fwhm_q: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Coherent and Compton patterns (populations x Q, float32) of log-normal populations with lattice strain.

        The coherent part of each population is its weighted sum of cluster patterns with Q rescaled by 1 + strain
        (exact for the self terms, first order for the pair terms; see ``lattice_jitter``); Compton is not rescaled.
        Optional per population: ``microstrain`` (FWHM of the spread of d-spacings, a fraction;
        :func:`~qdots_bluesky.sim.physics.profiles.microstrain_broadening`) and an instrument profile of Gaussian and
        Lorentzian FWHMs in Q (1/A; :func:`~qdots_bluesky.sim.physics.profiles.instrument_profile`), both on the coherent part.
        """
        weights = lognormal_weight_matrix(self.n, self.unit_nm, mean_nm, dispersion)
        crystal = (weights @ self.crystal).astype(np.float32)
        compton = (weights @ self.compton).astype(np.float32)
        strain = np.asarray(strain, dtype=float)
        if np.any(strain != 0):
            crystal = rescale_lattice(self.q, crystal, 1.0 + strain, self.form_factor_sq())
        if microstrain is not None:
            crystal = microstrain_broadening(self.q, crystal, microstrain)
        if instrument_gauss_fwhm_q is not None or instrument_lorentz_fwhm_q is not None:
            zero = np.zeros(crystal.shape[0])
            crystal = instrument_profile(crystal, float(self.q[1] - self.q[0]),
                                         zero if instrument_gauss_fwhm_q is None else instrument_gauss_fwhm_q,
                                         zero if instrument_lorentz_fwhm_q is None else instrument_lorentz_fwhm_q)
        return crystal, compton


def build_cluster_basis(settings=None, q: np.ndarray | None = None, progress: bool = False,
                        habit: str = "sphere") -> ClusterBasis:
    """Per-cluster patterns of ``settings.material``'s series up to ``settings.max_diameter_nm`` on ``q`` (default:
    the settings' Q grid), with the settings' wavelength, Compton and precision (a
    :class:`~qdots_bluesky.sim.physics.library.LibrarySettings`; default the reference library's). One exact DSE pass over
    every cluster's pair histogram (cached on disk like the library's): a few seconds for PbS up to 21 nm.
    ``habit``: the clusters' habit (:mod:`~.habits`; default the near-spherical reference series)."""
    from .library import LibrarySettings, library_patterns

    settings = settings or LibrarySettings()
    structure = get_structure(settings.material)
    if q is None:
        q = settings.grids()["q"]["q"]
    q = np.asarray(q, dtype=float)
    unit = float(equal_volume_diameter_nm(structure, 1))
    n_all = np.arange(1, max(1, int(np.floor(settings.max_diameter_nm / unit + 1e-9))) + 1)
    clusters = series_pair_table(structure, n_all, progress, habit)
    crystal, compton = library_patterns(q, settings, clusters, np.eye(n_all.size), np.zeros(1), progress, "cluster basis")
    return ClusterBasis(q, n_all, unit, crystal, compton, structure, float(settings.wavelength_a), check_habit(habit))


def lognormal_weight_matrix(n: np.ndarray, unit_nm: float, mean_nm: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """Number weights (populations x clusters) of log-normal distributions over series clusters n.

    Row by row the same as :func:`~qdots_bluesky.sim.physics.distribution.lognormal_number_weights` for dispersions > 0:
    each cluster takes the probability of [(n - 1/2), (n + 1/2)] unit_nm, weights below ``WEIGHT_CUTOFF`` are
    dropped and each row is renormalised (the distribution is truncated at the largest cluster).
    """
    mean_nm = np.atleast_1d(np.asarray(mean_nm, dtype=float))
    dispersion = np.atleast_1d(np.asarray(dispersion, dtype=float))
    if mean_nm.shape != dispersion.shape:
        raise ValueError(f"mean_nm {mean_nm.shape} and dispersion {dispersion.shape}; accepted: one value each per population")
    if np.any(~np.isfinite(mean_nm) | (mean_nm <= 0)) or np.any(~np.isfinite(dispersion) | (dispersion <= 0) | (dispersion >= 0.5)):
        bad = next(i for i in range(mean_nm.size)
                   if not (np.isfinite(mean_nm[i]) and mean_nm[i] > 0 and 0 < dispersion[i] < 0.5))
        check_distribution(float(mean_nm[bad]), float(dispersion[bad]))
        raise ValueError(f"dispersion {dispersion[bad]!r}; accepted here: in (0, 0.5) (a single cluster is not a "
                         "continuous population)")
    w2 = np.log1p(dispersion**2)
    m = np.log(mean_nm) - w2 / 2.0
    s = np.sqrt(w2)
    n = np.asarray(n, dtype=float)
    lo = np.log(np.maximum(n - 0.5, 1e-12) * unit_nm)
    hi = np.log((n + 0.5) * unit_nm)
    w = ndtr((hi[None, :] - m[:, None]) / s[:, None]) - ndtr((lo[None, :] - m[:, None]) / s[:, None])
    w[w < WEIGHT_CUTOFF] = 0.0
    total = w.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        i = int(np.flatnonzero(total[:, 0] <= 0)[0])
        raise ValueError(f"no cluster of the series (up to {n.max() * unit_nm:.1f} nm) carries weight for mean "
                         f"{mean_nm[i]:.3g} nm, dispersion {dispersion[i]:.3g}")
    return w / total


def population_targets(n: np.ndarray, unit_nm: float, mean_nm: np.ndarray, dispersion: np.ndarray,
                       strain: np.ndarray) -> dict[str, np.ndarray]:
    """The quantities a sizing network reports for each population (see the module docstring): mean_diameter_nm,
    volume_diameter_nm, dispersion, strain (float64 arrays, one value per population)."""
    mean_nm = np.atleast_1d(np.asarray(mean_nm, dtype=float))
    weights = lognormal_weight_matrix(n, unit_nm, mean_nm, dispersion)
    d = np.asarray(n, dtype=float) * unit_nm
    volume = (weights @ d**4) / (weights @ d**3)
    return {"mean_diameter_nm": mean_nm, "volume_diameter_nm": volume,
            "dispersion": np.atleast_1d(np.asarray(dispersion, dtype=float)),
            "strain": np.broadcast_to(np.asarray(strain, dtype=float), mean_nm.shape).copy()}


@dataclass
class PopulationRanges:
    """Ranges (low, high) of the continuous training populations; each drawn uniformly, independently.

    The mean diameters extend beyond the size classes (2-10 nm) so that the edges are learnt and dots beyond the
    trained range are recognised as such; strain is the fractional change of the lattice parameter from bulk.
    """

    mean_diameter_nm: tuple[float, float] = (1.5, 11.0)
    dispersion: tuple[float, float] = (0.03, 0.30)
    strain: tuple[float, float] = (-0.01, 0.01)
    # inhomogeneous strain: FWHM of the spread of d-spacings (a fraction), peaks broadened in proportion to Q;
    # drawn for a share microstrain_share of the populations, the others have none
    microstrain: tuple[float, float] = (0.0, 0.01)
    microstrain_share: float = 0.0
    # a synchrotron instrument profile in Q (1/A): detector pixels, a 0.3-1 mm capillary seen from ~0.76 m and the
    # beam's divergence give ~0.005-0.035 deg 2theta at 0.5-0.6 A (~0.001-0.006 1/A), Gaussian and Lorentzian
    # parts; drawn for a share instrument_share of the populations, the others are ideal
    instrument_gauss_fwhm_q: tuple[float, float] = (0.0, 0.005)
    instrument_lorentz_fwhm_q: tuple[float, float] = (0.0, 0.005)
    instrument_share: float = 0.7

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name.endswith("_share"):
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name}={value!r}; accepted: a share in [0, 1]")
                continue
            lo, hi = value
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name}={(lo, hi)!r}; accepted: (low, high) with low <= high")
        if self.mean_diameter_nm[0] <= 0:
            raise ValueError(f"mean_diameter_nm={self.mean_diameter_nm!r}; accepted: positive diameters in nm")
        if not (0 < self.dispersion[0] and self.dispersion[1] < 0.5):
            raise ValueError(f"dispersion={self.dispersion!r}; accepted: within (0, 0.5)")
        if not (-0.05 <= self.strain[0] and self.strain[1] <= 0.05):
            raise ValueError(f"strain={self.strain!r}; accepted: within +-0.05")
        for name in ("microstrain", "instrument_gauss_fwhm_q", "instrument_lorentz_fwhm_q"):
            lo, hi = getattr(self, name)
            if not (0.0 <= lo and hi <= 0.1):
                raise ValueError(f"{name}={(lo, hi)!r}; accepted: within 0 to 0.1")

    def to_dict(self) -> dict:
        return {k: v if k.endswith("_share") else list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d) -> "PopulationRanges":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown population ranges {sorted(unknown)}; accepted: {sorted(known)}")
        return cls(**{k: float(v) if k.endswith("_share") else tuple(v) for k, v in d.items()})


def draw_populations(rng: np.random.Generator, size: int, ranges: PopulationRanges = PopulationRanges()) -> dict[str, np.ndarray]:
    """``size`` populations drawn uniformly within ``ranges``: one array per range of :class:`PopulationRanges`
    (microstrain and the instrument widths zero outside their shares of the populations)."""
    values = {name: rng.uniform(*value, size=size) for name, value in asdict(ranges).items()
              if not name.endswith("_share")}
    strained = rng.random(size) < ranges.microstrain_share
    instrument = rng.random(size) < ranges.instrument_share
    values["microstrain"] *= strained
    values["instrument_gauss_fwhm_q"] *= instrument
    values["instrument_lorentz_fwhm_q"] *= instrument
    return values

