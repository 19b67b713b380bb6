"""The dot part of a refinement model: a log-normal population of series clusters, seen by an instrument.

For nonlinear parameters theta = (mean diameter D nm, dispersion, strain, Debye-Waller offset dB A^2
[, sample displacement mm], instrument Gaussian FWHM squared, instrument Lorentzian FWHM)
:meth:`DotModel.columns` returns the linear components of the dots on the data
points; the refinement (:mod:`~qdots_bluesky.refine.fit`) multiplies them by non-negative scales.

Per population (number weights of :func:`~qdots_bluesky.sim.physics.cluster_basis.lognormal_weight_matrix`):

    crystal(Q) = [w . B_crystal](Q (1 + strain)) F(Q) / F(Q (1 + strain)) exp(-dB Q^2 / (16 pi^2))
    compton(Q) = [w . B_compton](Q)

with F the site-averaged |f|^2 (the lattice rescaling of ``sim/physics/lattice_jitter.py``, here read at any
Q by cubic convolution). The Debye-Waller offset damps the pair (interference) terms only, as DebUsSy does:
the self terms of cluster n, n^3 sum_sites(o) F(Q) (n^3 cells per series cluster), stay undamped, so

    crystal = self + (crystal_strained - self) exp(-dB Q^2 / (16 pi^2)),

dB being the offset of B_i + B_j of a pair (twice a common per-atom offset of B).

Geometries (:class:`Geometry`):

* ``capillary`` (synchrotron Debye-Scherrer): I(Q) = crystal + compton at the data's Q.
* ``flat-plate`` (laboratory Bragg-Brentano, Cu K-alpha): 2theta_true = 2theta + 2 (s / R) cos(theta)
  (s: sample displacement, R: goniometer radius); I = p(2theta) [I(Q1) + ratio I(Q2)], Q_i = 4 pi sin(theta_true)
  / lambda_i (K-alpha1, K-alpha2); p the polarization (1 + cos^2 2theta_M cos^2 2theta) / (1 + cos^2 2theta_M)
  (2theta_M = 0 without monochromator). The Lorentz factor 1 / (sin^2 theta cos theta) is *not* applied by
  default: a DSE pattern I(Q) already holds it (the 1/Q^2 of the powder average and the Jacobian
  dQ / d2theta); ``lorentz=True`` applies it anyway. Texture: with the reflection families k of the
  structure (:func:`~qdots_bluesky.sim.physics.reflections.bragg_reflections`; families at the same Q merged),
  Gaussian windows w_k(Q) at Q_k / (1 + strain) of width s = the Scherrer FWHM of D (2 pi 1.0747 / D), and
  powder intensities I_k = m |F|^2 / Q^2, the crystal part is split as in the augmentation's
  preferred-orientation correction C = 1 + cover sum_k (P_k - 1) g_k, g_k = I_k w_k / sum I w, cover =
  min(1, sum w): one column crystal (1 - cover) + compton (scale s) and one column crystal cover g_k per family
  (scale s P_k >= 0): a free non-negative scale per family.

Instrument resolution: a Voigt profile (Gaussian and Lorentzian FWHM) convolved with the dots' pattern, of
constant width on the measured axis: in Q (1/A) for a capillary (the population's crystal part is convolved on
the basis grid, with widths x (1 + strain) so that they hold on the data's Q), in 2theta (deg) for a flat plate
(the dot columns are computed on an auxiliary equispaced 2theta grid around the data, convolved there and read
at the data's 2theta by cubic convolution). The Compton part and the blanks are smooth and left as they are.
The Gaussian enters theta as its squared FWHM (widths of Gaussians add in squares; the derivative stays finite at
0, where a Gaussian's FWHM has none). Missing instrument entries in theta count as 0 (no instrument broadening).

Units: Q in 1/A, 2theta in degrees, wavelength in A, diameters in nm, strain fractional, dB in A^2.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from scipy.special import ndtr

from ..sim.physics.cluster_basis import WEIGHT_CUTOFF, ClusterBasis, lognormal_weight_matrix
from ..sim.physics.profiles import voigt_convolve
from ..sim.physics.reflections import bragg_reflections
from .spectral import basis_spectra

__all__ = ["Geometry", "DotModel", "cubic_interp", "KA2_WAVELENGTH_A", "SCHERRER_K_SPHERE", "PARAMETERS",
           "INSTRUMENT_BOUNDS", "INSTRUMENT_UNITS"]

#: Cu K-alpha2 wavelength (A) and the K-alpha2 / K-alpha1 intensity ratio.
KA2_WAVELENGTH_A = 1.54443
KA2_RATIO = 0.5
#: Scherrer constant of spheres for the integral-breadth-free FWHM estimate used by the texture windows.
SCHERRER_K_SPHERE = 1.0747
#: Nonlinear parameters in order: mean diameter (nm), dispersion, strain, Debye-Waller offset (A^2), displacement
#: (mm, flat plate only), instrument Gaussian FWHM squared and Lorentzian FWHM (1/A capillary, deg 2theta flat
#: plate).
PARAMETERS = ("size_nm", "dispersion", "strain", "b_offset", "displacement_mm", "instrument_gauss_fwhm_sq",
              "instrument_lorentz_fwhm")
#: Upper bounds of the instrument FWHMs per geometry (lower bounds 0) and their units.
INSTRUMENT_BOUNDS = {"capillary": 0.02, "flat-plate": 0.3}
INSTRUMENT_UNITS = {"capillary": "1/A", "flat-plate": "deg"}
#: Step (deg) of the auxiliary 2theta grid of a flat plate's instrument convolution (or the data's, if finer). The
#: data are read on the basis's Q step (0.0027 1/A: 0.03-0.04 deg at Cu K-alpha), and the narrowest dot peaks the
#: refinement allows (clusters up to 0.75 x 21 nm) are >= 0.5 deg wide: >= 12 points of 0.04 deg per FWHM, where the
#: cubic reading errs by < 1e-3. Against 0.02 deg: D_N moves by 0.003 nm (0.01 e.s.d.) on the measured films, in 30 %
#: less time.
AUX_TTH_STEP = 0.04
GEOMETRIES = ("capillary", "flat-plate")
#: A capillary model keeps its evaluations at the last KEPT_EVALUATIONS thetas: a least-squares step's accepted point
#: (whose Jacobian builds on it) and its last trial.
KEPT_EVALUATIONS = 2


@dataclass(frozen=True)
class Geometry:
    """Instrument geometry of a refinement (see the module docstring)."""

    kind: str = "capillary"
    ka2_wavelength_a: float = KA2_WAVELENGTH_A
    ka2_ratio: float = KA2_RATIO
    monochromator_tth_deg: float | None = None
    goniometer_radius_mm: float = 217.5
    texture: bool = True
    lorentz: bool = False

    def __post_init__(self) -> None:
        if self.kind not in GEOMETRIES:
            raise ValueError(f"geometry {self.kind!r}; accepted: {', '.join(GEOMETRIES)}")
        if not 0.0 <= self.ka2_ratio <= 1.0:
            raise ValueError(f"ka2_ratio {self.ka2_ratio!r}; accepted: 0 to 1")
        if not self.goniometer_radius_mm > 0:
            raise ValueError(f"goniometer_radius_mm {self.goniometer_radius_mm!r}; accepted: a positive radius in mm")

    @property
    def flat_plate(self) -> bool:
        return self.kind == "flat-plate"

    def to_dict(self) -> dict:
        return asdict(self)


def cubic_interp(x0: float, step: float, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values of ``y`` (rows on the equispaced grid x0 + step i) at ``x`` by cubic convolution (Keys, a = -1/2;
    exact for cubics); the end values are held beyond the grid."""
    y = np.atleast_2d(y)
    n = y.shape[-1]
    padded = np.concatenate([y[:, :1], y[:, :1], y, y[:, -1:], y[:, -1:]], axis=1)
    t = np.clip((np.asarray(x, dtype=float) - x0) / step, 0.0, n - 1.0)
    base = np.minimum(t.astype(np.int64), n - 2)
    t = t - base
    t2, t3 = t * t, t * t * t
    w = ((-t3 + 2.0 * t2 - t) * 0.5, (3.0 * t3 - 5.0 * t2 + 2.0) * 0.5, (-3.0 * t3 + 4.0 * t2 + t) * 0.5, (t3 - t2) * 0.5)
    i = base + 1  # padded index of tap -1
    out = w[0] * padded[:, i] + w[1] * padded[:, i + 1] + w[2] * padded[:, i + 2] + w[3] * padded[:, i + 3]
    return out


def _linear_rows(rows: np.ndarray, x0: float, step: float, x: np.ndarray) -> np.ndarray:
    """Rows on the equispaced grid x0 + step i read at ``x`` by linear interpolation (end values held beyond the
    grid, as :func:`numpy.interp`), all rows at once."""
    n = rows.shape[1]
    t = np.clip((np.asarray(x, dtype=float) - x0) / step, 0.0, n - 1.0)
    base = np.minimum(t.astype(np.int64), n - 2)
    t = t - base
    return rows[:, base] * (1.0 - t) + rows[:, base + 1] * t


class _LazyRows:
    """Rows on the equispaced grid x0 + step i read at ``x`` by linear interpolation (:func:`_linear_rows`), each row
    computed when first asked for: a population weights a dozen or two of the series' clusters, so a refinement reads
    those, not all of them (reading every cluster's Compton part at 5000 points cost 1 ms per model)."""

    def __init__(self, rows: np.ndarray, x0: float, step: float, x: np.ndarray) -> None:
        self._source, self._x0, self._step, self._x = rows, x0, step, np.asarray(x, dtype=float)
        self._rows = np.empty((rows.shape[0], self._x.size))
        self._have = np.zeros(rows.shape[0], dtype=bool)

    def take(self, index: np.ndarray | slice) -> np.ndarray:
        """Rows ``index`` (an integer array, or a slice: then a view) read at x (rows x points)."""
        wanted = np.arange(self._have.size)[index]
        missing = wanted[~self._have[wanted]]
        if missing.size:
            self._rows[missing] = _linear_rows(self._source[missing], self._x0, self._step, self._x)
            self._have[missing] = True
        return self._rows[index]


def _cubic_row(x0: float, step: float, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """:func:`cubic_interp` of one row (faster: one padded copy, four gathers)."""
    n = y.size
    padded = np.concatenate([y[:1], y[:1], y, y[-1:], y[-1:]])
    t = np.clip((x - x0) / step, 0.0, n - 1.0)
    base = np.minimum(t.astype(np.int64), n - 2)
    t = t - base
    t2 = t * t
    t3 = t2 * t
    i = base + 1
    return (0.5 * (-t3 + 2.0 * t2 - t) * padded[i] + 0.5 * (3.0 * t3 - 5.0 * t2 + 2.0) * padded[i + 1]
            + 0.5 * (-3.0 * t3 + 4.0 * t2 + t) * padded[i + 2] + 0.5 * (t3 - t2) * padded[i + 3])


class _CubicReading:
    """How points x are read from rows on the equispaced grid x0 + step i (``n`` points): the taps and weights of
    :func:`cubic_interp` (Keys, a = -1/2; end values held beyond the grid) and of linear interpolation, computed once
    per set of points and used for every row read there (a capillary evaluation reads five rows at Q (1 + strain))."""

    def __init__(self, x0: float, step: float, n: int, x: np.ndarray, slope_step: float | None = None) -> None:
        u = np.asarray(x, dtype=float) - x0 if step == 1.0 else (np.asarray(x, dtype=float) - x0) / step
        self.step = float(step if slope_step is None else slope_step)  # x's unit per grid step, for the slope
        self._u, self._n = u, n
        t = np.clip(u, 0.0, n - 1.0)
        self.base = np.minimum(t.astype(np.int64), n - 2)
        t -= self.base
        self.t = t
        self._t2 = t2 = t * t
        self.taps = self.base + np.arange(-1, 3)[:, None]  # (4, points): the edge padding by clipping
        if self.base.min() < 1 or self.base.max() > n - 3:
            np.clip(self.taps, 0, n - 1, out=self.taps)
        w = self.weights = np.empty((4, t.size))  # Keys' kernel, a = -1/2
        np.multiply(t, (2.0 - t) * t - 1.0, out=w[0])
        np.multiply(t2, 3.0 * t - 5.0, out=w[1])
        w[1] += 2.0
        np.multiply(t, (4.0 - 3.0 * t) * t + 1.0, out=w[2])
        np.multiply(t2, t - 1.0, out=w[3])
        w *= 0.5

    def taps_of(self, row: np.ndarray) -> np.ndarray:
        """The four taps of one row at every point (4 x points), for :meth:`cubic_of` and :meth:`slope_of`."""
        return np.take(row, self.taps)

    def cubic(self, rows: np.ndarray) -> np.ndarray:
        """Rows (rows x grid points) at the points (rows x points)."""
        return np.einsum("rkp,kp->rp", np.take(np.atleast_2d(rows), self.taps, axis=1), self.weights)

    def cubic_of(self, taps: np.ndarray) -> np.ndarray:
        """One row at the points from its :meth:`taps_of`."""
        return np.einsum("kp,kp->p", taps, self.weights)

    def slope_of(self, taps: np.ndarray) -> np.ndarray:
        """d/dx of the cubic reading of one row at the points, from its :meth:`taps_of` (0 beyond the grid)."""
        t, t2 = self.t, self._t2
        d = 0.5 * np.stack([-3.0 * t2 + 4.0 * t - 1.0, 9.0 * t2 - 10.0 * t, -9.0 * t2 + 8.0 * t + 1.0, 3.0 * t2 - 2.0 * t])
        inside = (self._u > 0) & (self._u < self._n - 1)  # beyond the grid the held end values have no slope
        return np.einsum("kp,kp->p", taps, d) / self.step * inside

    def linear(self, values: np.ndarray) -> np.ndarray:
        """One row at the points by linear interpolation (as :func:`numpy.interp` on the grid)."""
        return values[self.base] * (1.0 - self.t) + values[self.base + 1] * self.t


@dataclass
class _CapillaryEvaluation:
    """A capillary model at one theta: the dot column and what its Jacobian builds on (see
    :meth:`DotModel.columns_jacobian`)."""

    key: bytes
    weights: np.ndarray  # (3, live clusters): the population, D + h_d, dispersion + h_s
    live: slice  # the clusters from the first to the last one weighted
    steps: tuple[float, float]  # h_d (nm), h_s
    widths: tuple[float, float]  # instrument FWHMs on the basis grid (x (1 + strain))
    spectrum: np.ndarray | None  # the population's convolved spectrum (None: no instrument, or beyond reach)
    rows: np.ndarray | None  # beyond the spectra's reach: the 5 rows of voigt_convolve (population, D, disp, d_g, d_l)
    crystal: np.ndarray  # the population's crystal row on the basis grid (convolved)
    transfer: np.ndarray | None  # the instrument's transfer function at the widths (with ``spectrum``)
    reading: _CubicReading
    taps: np.ndarray  # the crystal row's taps at the points (:meth:`_CubicReading.taps_of`)
    value: np.ndarray  # crystal at Q (1 + strain)
    f_at: np.ndarray  # F(Q (1 + strain)), at least 1e-30
    ratio: np.ndarray  # F(Q) / F(Q (1 + strain))
    damp: np.ndarray  # the Debye-Waller offset's factor on the pair terms
    atoms: np.ndarray  # (3,) mean atoms per nanocrystal of the three populations
    compton: np.ndarray  # (live clusters, points)
    pair: np.ndarray  # interference part of the population's crystal column (before the damping)
    column: np.ndarray
    jacobian: np.ndarray | None = None
    jacobian_instrument: bool = False  # whether the Jacobian holds the instrument widths' columns


def _reflections(basis: ClusterBasis, q_max: float, wavelength_a: float) -> list:
    """The basis structure's reflection families up to ``q_max`` (1/A) at ``wavelength_a`` (A): computed once per
    basis, wavelength and whole 1/A of reach and kept on the basis (every model of a refinement, its binned and
    auxiliary ones included, asks for them)."""
    cache = basis.__dict__.setdefault("_reflections", {})
    reach = float(np.ceil(q_max))
    key = (reach, float(wavelength_a))
    if key not in cache:
        cache[key] = bragg_reflections(basis.structure, reach, wavelength_a=wavelength_a)
    return [r for r in cache[key] if r.q <= q_max]


def polarization(tth_deg: np.ndarray, monochromator_tth_deg: float | None = None) -> np.ndarray:
    """Polarization factor of an unpolarized beam, (1 + cos^2 2thM cos^2 2th) / (1 + cos^2 2thM)."""
    c2 = np.cos(np.radians(tth_deg)) ** 2
    cm = 1.0 if monochromator_tth_deg is None else np.cos(np.radians(monochromator_tth_deg)) ** 2
    return (1.0 + cm * c2) / (1.0 + cm)


class DotModel:
    """Linear components of the dots on the data points for given nonlinear parameters.

    ``q``: data Q (1/A; for a flat plate the K-alpha1 Q of the observed 2theta); ``tth``: observed 2theta
    (deg), needed for a flat plate; ``wavelength_a``: the (K-alpha1) wavelength of the data; ``family_q``: the
    Q range (1/A) whose reflection families get a texture scale (default that of ``q``); ``aux_step``: step (deg)
    of a flat plate's auxiliary 2theta grid (default :data:`AUX_TTH_STEP`, or the data's step if finer).
    """

    def __init__(self, basis: ClusterBasis, q: np.ndarray, wavelength_a: float, geometry: Geometry = Geometry(),
                 tth: np.ndarray | None = None, family_q: tuple[float, float] | None = None,
                 aux_step: float | None = None, _aux: bool = True) -> None:
        self.basis = basis
        self.q = np.asarray(q, dtype=float)
        self.wavelength_a = float(wavelength_a)
        self.geometry = geometry
        self.q0 = float(basis.q[0])
        self.step = float(basis.q[1] - basis.q[0])
        self.f_sq = np.asarray(basis.form_factor_sq(), dtype=float)
        self.n_clusters = basis.n.size
        self.max_diameter_nm = float(basis.diameter_nm[-1])
        if geometry.flat_plate:
            if tth is None:
                raise ValueError("a flat-plate model needs the observed 2theta of every point")
            self.tth = np.asarray(tth, dtype=float)
            self.pol = polarization(self.tth, geometry.monochromator_tth_deg)
            if geometry.lorentz:
                th = np.radians(self.tth) / 2.0
                self.pol = self.pol / (np.sin(th) ** 2 * np.cos(th))
            self.wavelengths = (self.wavelength_a,) + ((geometry.ka2_wavelength_a,) if geometry.ka2_ratio > 0 else ())
            self.ratios = (1.0,) + ((geometry.ka2_ratio,) if geometry.ka2_ratio > 0 else ())
        else:
            self.tth = None
            self.pol = None
            self.wavelengths = (self.wavelength_a,)
            self.ratios = (1.0,)
        # per wavelength of the beam, at zero displacement: F(Q) and every cluster's Compton part on the points
        # (Compton is smooth: linear interpolation; on a flat plate the displacement's shift of it is neglected)
        q_zero = self.observed_q(np.zeros(5))
        self._f_true = [np.interp(q, basis.q, self.f_sq) for q in q_zero]
        self._compton_q = [_LazyRows(basis.compton, self.q0, self.step, q) for q in q_zero]
        self._f_grad = np.gradient(self.f_sq, self.step)
        # self terms per cluster and unit F: n^3 cells of sum(occupancy) atoms each
        self._atoms = np.asarray(basis.n, dtype=float) ** 3 * float(np.sum(basis.structure.occupancies))
        self._window_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self.families: list[str] = []
        self._fam_q = np.zeros(0)
        self._fam_i = np.zeros(0)
        self.max_instrument_fwhm = INSTRUMENT_BOUNDS[geometry.kind]
        self._family_q = family_q or (float(self.q.min()), float(self.q.max()))
        if geometry.flat_plate and geometry.texture:
            self._setup_families()
        self._q2 = self.q * self.q / (16.0 * np.pi**2)  # the Debye-Waller exponent per A^2
        n = np.asarray(basis.n, dtype=float)  # log diameters bounding each cluster's share of a log-normal
        self._log_lo = np.log(np.maximum(n - 0.5, 1e-12) * basis.unit_nm)
        self._log_hi = np.log((n + 0.5) * basis.unit_nm)
        self._u0 = self.q0 / self.step  # the basis grid in units of its step
        self._q_steps = self.q / self.step
        self._evaluations: list[_CapillaryEvaluation] = []  # the last KEPT_EVALUATIONS, the newest last
        self._aux: DotModel | None = None
        self._last_inner: tuple[bytes, np.ndarray] | None = None
        if geometry.flat_plate and _aux:  # the instrument's convolution in 2theta runs on an equispaced grid
            step = min(AUX_TTH_STEP, float(np.median(np.diff(self.tth)))) if self.tth.size > 1 else AUX_TTH_STEP
            step = step if aux_step is None else float(aux_step)
            pad = 10.0 * self.max_instrument_fwhm  # the model beyond the data, for the kernel's reach (deg)
            lo = max(float(self.tth.min()) - pad, 1.0)
            tth_aux = lo + step * np.arange(int(np.ceil((min(float(self.tth.max()) + pad, 179.0) - lo) / step)) + 1)
            q_aux = 4.0 * np.pi * np.sin(np.radians(tth_aux) / 2.0) / self.wavelength_a
            self._aux = DotModel(basis, q_aux, wavelength_a, geometry, tth_aux, family_q=self._family_q, _aux=False)
            self._aux_step = step
            self.families = self._aux.families

    @property
    def aux_step(self) -> float | None:
        """Step (deg) of the auxiliary 2theta grid of a flat plate (None for a capillary)."""
        return None if self._aux is None else self._aux_step

    @property
    def family_range(self) -> tuple[float, float]:
        """Q range (1/A) whose reflection families get a texture scale."""
        return self._family_q

    @property
    def family_intensities(self) -> np.ndarray:
        """Powder intensities m |F|^2 / Q^2 of the reflection families with a texture scale (:attr:`families` order)."""
        model = self._aux if self._aux is not None else self
        return model._fam_i[model._fam_in] if model.families else np.zeros(0)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the nonlinear parameters (see :data:`PARAMETERS`)."""
        return PARAMETERS if self.geometry.flat_plate else PARAMETERS[:4] + PARAMETERS[5:]

    @property
    def instrument_index(self) -> int:
        """Index of the instrument Gaussian FWHM squared in theta (the Lorentzian FWHM follows)."""
        return self.n_parameters - 2

    def instrument_widths(self, theta: np.ndarray) -> tuple[float, float]:
        """(Gaussian, Lorentzian) instrument FWHM of theta (0 where theta has no instrument entries)."""
        k = self.instrument_index
        if len(theta) < k + 2:
            return 0.0, 0.0
        return float(np.sqrt(max(float(theta[k]), 0.0))), float(theta[k + 1])

    def x_scale(self, theta: np.ndarray) -> np.ndarray:
        """Typical steps of the nonlinear parameters (for the trust region's scaling)."""
        base = [max(0.05 * abs(float(theta[0])), 0.02), 0.02, 0.001, 0.2] + ([0.05] if self.geometry.flat_plate else [])
        return np.array(base + [(0.1 * self.max_instrument_fwhm) ** 2, 0.05 * self.max_instrument_fwhm])

    @property
    def n_parameters(self) -> int:
        """Number of nonlinear parameters: 6 (with the instrument's two widths), 7 with a flat plate's displacement."""
        return 7 if self.geometry.flat_plate else 6

    @property
    def column_names(self) -> list[str]:
        return ["dots"] + [f"texture_{label}" for label in self.families]

    def _setup_families(self) -> None:
        qmax = float(self.q.max()) * 1.05 + 0.3
        refl = _reflections(self.basis, qmax, self.wavelength_a)
        groups: list[tuple[float, float, list[str]]] = []
        for r in refl:
            inten = r.multiplicity * r.f_squared / r.q**2
            if groups and abs(r.q - groups[-1][0]) < 1e-5 * r.q:
                q0, i0, labels = groups[-1]
                groups[-1] = (q0, i0 + inten, labels + [r.label])
            else:
                groups.append((r.q, inten, [r.label]))
        qmin_data, qmax_data = self._family_q
        keep = [g for g in groups if qmin_data - 0.3 <= g[0] <= qmax_data + 0.3]
        self.families = ["/".join(g[2]) for g in keep if qmin_data <= g[0] <= qmax_data]
        self._fam_q = np.array([g[0] for g in keep])
        self._fam_i = np.array([g[1] for g in keep])
        self._fam_in = np.array([qmin_data <= g[0] <= qmax_data for g in keep], dtype=bool)

    def observed_q(self, theta: np.ndarray) -> list[np.ndarray]:
        """True Q (1/A) of each point for each wavelength of the beam (displacement applied on a flat plate)."""
        if not self.geometry.flat_plate:
            return [self.q]
        shift = 2.0 * (theta[4] / self.geometry.goniometer_radius_mm) * np.cos(np.radians(self.tth) / 2.0)
        th = np.radians(self.tth) / 2.0 + shift / 2.0
        return [4.0 * np.pi * np.sin(th) / wl for wl in self.wavelengths]

    def weights(self, size_nm: float, dispersion: float) -> np.ndarray:
        """Number weights (clusters,) of a log-normal population (mean diameter nm, relative std)."""
        return lognormal_weight_matrix(self.basis.n, self.basis.unit_nm, np.array([size_nm]), np.array([dispersion]))[0]

    def population(self, size_nm: float, dispersion: float) -> tuple[np.ndarray, np.ndarray]:
        """Crystal and Compton patterns (basis grid) of a log-normal population, per nanocrystal."""
        w = self.weights(size_nm, dispersion)
        return w @ self.basis.crystal, w @ self.basis.compton

    def _read(self, crystal: np.ndarray, atoms: float, q: np.ndarray, f_true: np.ndarray, strain: float,
              b_offset: float) -> np.ndarray:
        """Crystal part at Q (1 + strain) with the form-factor ratio; the Debye-Waller offset on the pair terms
        (``atoms``: mean number of atoms per nanocrystal, whose self terms are atoms x F(Q))."""
        qs = q * (1.0 + strain)
        crys = _cubic_row(self.q0, self.step, crystal, qs)
        f_at = np.interp(qs, self.basis.q, self.f_sq)
        crys *= f_true / np.maximum(f_at, 1e-30)
        if b_offset != 0.0:
            self_terms = atoms * f_true
            crys = self_terms + (crys - self_terms) * np.exp(-b_offset * q * q / (16.0 * np.pi**2))
        return crys

    def columns(self, theta: np.ndarray) -> np.ndarray:
        """Dot components (points x columns, see :attr:`column_names`) for theta = (D nm, dispersion, strain,
        dB A^2[, displacement mm], instrument Gaussian and Lorentzian FWHM)."""
        theta = np.asarray(theta, dtype=float)
        gauss, lorentz = self.instrument_widths(theta)
        if self._aux is not None:  # flat plate: on the equispaced 2theta grid, convolved, read at the data's 2theta
            inner = self._inner(theta)
            if gauss > 0 or lorentz > 0:
                inner = voigt_convolve(inner, self._aux_step, gauss, lorentz, max_fwhm=self.max_instrument_fwhm)
            return cubic_interp(float(self._aux.tth[0]), self._aux_step, inner, self.tth).T
        if self.analytic:
            return self._capillary(theta).column[:, None].copy()
        w = self.weights(theta[0], theta[1])
        live = np.flatnonzero(w)
        crystal = w[live] @ self.basis.crystal[live]  # a flat plate's own points (its instrument: on the 2theta grid)
        qs = self.observed_q(theta)
        n_fam = len(self.families)
        out = np.zeros((self.q.size, 1 + n_fam))
        for q, ratio, f_zero, comp_q in zip(qs, self.ratios, self._f_true, self._compton_q):
            f_true = f_zero if not self.geometry.flat_plate else np.interp(q, self.basis.q, self.f_sq)
            crys = self._read(crystal, float(w[live] @ self._atoms[live]), q, f_true, theta[2], theta[3])
            comp = w[live] @ comp_q.take(live)
            if n_fam:
                key = (theta[0], theta[2], theta[4], ratio)  # windows depend on D, strain and the points' Q only
                hit = self._window_cache.get(key)
                if hit is None:
                    if len(self._window_cache) > 16:
                        self._window_cache.clear()
                    hit = self._window_cache[key] = self._windows(q, theta[0], theta[2])
                g, cover = hit
                out[:, 0] += ratio * (crys * (1.0 - cover) + comp)
                out[:, 1:] += ratio * (crys * cover)[:, None] * g
            else:
                out[:, 0] += ratio * (crys + comp)
        if self.pol is not None:
            out *= self.pol[:, None]
        return out

    def _inner(self, theta: np.ndarray) -> np.ndarray:
        """A flat plate's dot columns on the auxiliary 2theta grid before the instrument (columns x points); the
        last one is kept (a Jacobian's instrument columns start from the columns of the same theta)."""
        key = theta[:5].tobytes()
        if self._last_inner is None or self._last_inner[0] != key:
            self._last_inner = (key, self._aux.columns(theta[:5]).T)
        return self._last_inner[1]

    def instrument_derivatives(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A flat plate's dot columns differentiated by the instrument's Gaussian FWHM squared and Lorentzian FWHM
        (points x columns each; exact, from the Voigt transfer function on the auxiliary 2theta grid)."""
        if self._aux is None:
            raise ValueError("instrument derivatives of the columns are computed for the flat-plate geometry only")
        gauss, lorentz = self.instrument_widths(np.asarray(theta, dtype=float))
        inner = self._inner(np.asarray(theta, dtype=float))
        _, d_g, d_l = voigt_convolve(inner, self._aux_step, gauss, lorentz, derivatives=True,
                                     max_fwhm=self.max_instrument_fwhm)
        x0 = float(self._aux.tth[0])
        return cubic_interp(x0, self._aux_step, d_g, self.tth).T, cubic_interp(x0, self._aux_step, d_l, self.tth).T

    @property
    def analytic(self) -> bool:
        """Whether :meth:`columns_jacobian` applies (a capillary: one dot column, no texture)."""
        return not self.geometry.flat_plate

    def _weight_rows(self, size_nm: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
        """:func:`~qdots_bluesky.sim.physics.cluster_basis.lognormal_weight_matrix` (the same numbers) without its
        checks where the populations are valid (the refinement's bounds keep them so), with the cluster bounds'
        logarithms computed once: a third of its time in a step that costs a few hundred microseconds."""
        if not (np.all(size_nm > 0) and np.all((dispersion > 0) & (dispersion < 0.5))):
            return lognormal_weight_matrix(self.basis.n, self.basis.unit_nm, size_nm, dispersion)  # its message
        w2 = np.log1p(dispersion**2)
        m = np.log(size_nm) - w2 / 2.0
        s = np.sqrt(w2)
        w = ndtr((self._log_hi[None, :] - m[:, None]) / s[:, None]) - ndtr((self._log_lo[None, :] - m[:, None]) / s[:, None])
        w[w < WEIGHT_CUTOFF] = 0.0
        total = w.sum(axis=1, keepdims=True)
        if np.any(total <= 0):
            return lognormal_weight_matrix(self.basis.n, self.basis.unit_nm, size_nm, dispersion)  # its message
        return w / total

    def _capillary(self, theta: np.ndarray) -> _CapillaryEvaluation:
        """The capillary model at theta: the dot column, and the weights, spectra and cubic reading its Jacobian
        builds on. Kept for the last ``KEPT_EVALUATIONS`` thetas: a least-squares step asks for the column, and only
        where the step is accepted for its Jacobian at the same theta, so a rejected step costs the column alone."""
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        kept = next((ev for ev in self._evaluations if ev.key == key), None)
        if kept is not None:
            return kept
        size, disp, strain, b_offset = (float(v) for v in theta[:4])
        gauss, lorentz = self.instrument_widths(theta)
        h_d, h_s = 1e-4 * max(size, 1.0), 1e-4
        W = self._weight_rows(np.array([size, size + h_d, size]), np.array([disp, disp, disp + h_s]))
        nonzero = np.flatnonzero(W.any(axis=0))
        live = slice(int(nonzero[0]), int(nonzero[-1]) + 1)  # the clusters the populations weight, as views
        W = W[:, live]
        stretch = 1.0 + strain
        widths = (gauss * stretch, lorentz * stretch)  # the widths on the basis grid read at Q (1 + strain)
        spectral = basis_spectra(self.basis, self.max_instrument_fwhm)
        spectrum = rows = transfer = None
        if not spectral.within_reach(*widths):  # beyond the padding: every row from the general routine
            out, d_g, d_l = spectral.convolve(W, live, *widths, derivatives=True)
            rows = np.vstack([out, stretch**2 * d_g, stretch * d_l])
            crystal = rows[0]
        elif gauss > 0 or lorentz > 0:
            transfer = spectral.transfer(*widths)
            spectrum = spectral.spectra(W[0], live, *widths, transfer=transfer)[0]
            crystal = spectral.rows(spectrum)
        else:
            crystal = W[0] @ self.basis.crystal[live]
        reading = _CubicReading(self._u0, 1.0, crystal.size, self._q_steps * stretch, self.step)
        taps = reading.taps_of(crystal)
        value = reading.cubic_of(taps)
        f_at = np.maximum(reading.linear(self.f_sq), 1e-30)
        ratio = self._f_true[0] / f_at
        damp = np.exp(-b_offset * self._q2)
        atoms = W @ self._atoms[live]
        compton = self._compton_q[0].take(live)
        self_terms = atoms[0] * self._f_true[0]
        pair = value * ratio - self_terms
        column = self_terms + pair * damp + W[0] @ compton
        evaluation = _CapillaryEvaluation(key, W, live, (h_d, h_s), widths, spectrum, rows, crystal, transfer,
                                          reading, taps, value, f_at, ratio, damp, atoms, compton, pair, column)
        self._evaluations = self._evaluations[-(KEPT_EVALUATIONS - 1):] + [evaluation]
        return evaluation

    def columns_jacobian(self, theta: np.ndarray, instrument: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Capillary dot column (points,) and its derivatives (points x 6) by D, dispersion, strain, dB and the
        instrument's Gaussian FWHM squared and Lorentzian FWHM: strain and dB analytic (the cubic kernel's derivative), the
        widths exact (the Voigt transfer function's), D and dispersion by forward differences of the weights.
        ``instrument`` False: the widths' columns are left 0 (held widths need none). Builds on the column of the same
        theta where it was just computed (:meth:`_capillary`)."""
        if not self.analytic:
            raise ValueError("analytic derivatives are available for the capillary geometry only")
        ev = self._capillary(theta)
        if ev.jacobian is not None and (ev.jacobian_instrument or not instrument):
            return ev.column, ev.jacobian
        W, live, reading = ev.weights, ev.live, ev.reading
        stretch = 1.0 + float(np.asarray(theta, dtype=float)[2])
        spectral = basis_spectra(self.basis, self.max_instrument_fwhm)
        if ev.rows is not None:
            rows = ev.rows[1:] if instrument else ev.rows[1:3]
        else:
            if ev.spectrum is not None:
                fd = spectral.rows(spectral.spectra(W[1:], live, *ev.widths, transfer=ev.transfer))
            else:
                fd = W[1:] @ self.basis.crystal[live]
            rows = fd
            if instrument:
                spectrum = ev.spectrum if ev.spectrum is not None else spectral.spectra(W[0], live, 0.0, 0.0)[0]
                d = spectral.rows(spectral.derivative_spectra(spectrum))
                rows = np.vstack([fd, stretch**2 * d[:1], stretch * d[1:]])
        values = reading.cubic(rows)  # (2 or 4, points)
        q, f_true = self.q, self._f_true[0]
        slope = reading.slope_of(ev.taps)  # d crystal / dQ at Q (1 + strain)
        d_ratio = -ev.ratio * reading.linear(self._f_grad) / ev.f_at * q
        self_terms = ev.atoms[1:, None] * f_true
        shifted = self_terms + (values[:2] * ev.ratio - self_terms) * ev.damp + W[1:] @ ev.compton  # (2, points)
        jac = np.zeros((q.size, 6))
        jac[:, 0] = (shifted[0] - ev.column) / ev.steps[0]
        jac[:, 1] = (shifted[1] - ev.column) / ev.steps[1]
        jac[:, 2] = (slope * q * ev.ratio + ev.value * d_ratio) * ev.damp
        jac[:, 3] = -self._q2 * ev.pair * ev.damp
        if instrument:
            jac[:, 4] = values[2] * ev.ratio * ev.damp
            jac[:, 5] = values[3] * ev.ratio * ev.damp
        ev.jacobian, ev.jacobian_instrument = jac, instrument
        return ev.column, jac

    def _windows(self, q: np.ndarray, size_nm: float, strain: float) -> tuple[np.ndarray, np.ndarray]:
        """g_k (points x families in range) and cover (points,) of the texture split at Q."""
        sigma = 2.0 * np.pi * SCHERRER_K_SPHERE / (10.0 * size_nm)
        z = (q[:, None] - self._fam_q[None, :] / (1.0 + strain)) / sigma
        w = np.exp(-0.5 * z * z)
        iw = w * self._fam_i[None, :]
        den = iw.sum(axis=1, keepdims=True)
        g = np.divide(iw, den, out=np.zeros_like(iw), where=den > 1e-300)
        cover = np.minimum(1.0, w.sum(axis=1))
        # families beyond the data's range keep the untextured scale: their share goes back to the base
        out_share = g[:, ~self._fam_in].sum(axis=1)
        return g[:, self._fam_in], cover * (1.0 - out_share)
