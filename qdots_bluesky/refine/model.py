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

from ..sim.physics.cluster_basis import ClusterBasis, lognormal_weight_matrix
from ..sim.physics.profiles import voigt_convolve
from ..sim.physics.reflections import bragg_reflections
from .capillary import KEPT_EVALUATIONS, CapillaryEvaluation, LazyRows, LogNormalRows, evaluate, jacobian

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
        self._compton_q = [LazyRows(basis.compton, self.q0, self.step, q) for q in q_zero]
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
        self.weight_rows = LogNormalRows(basis)  # the population's weights, as lognormal_weight_matrix's
        self._u0 = self.q0 / self.step  # the basis grid in units of its step
        self._q_steps = self.q / self.step
        self._evaluations: list[CapillaryEvaluation] = []  # the last KEPT_EVALUATIONS, the newest last
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

    def _capillary(self, theta: np.ndarray) -> CapillaryEvaluation:
        """The capillary model at theta (:func:`~qdots_bluesky.refine.capillary.evaluate`), kept for the last
        ``KEPT_EVALUATIONS`` thetas: a least-squares step asks for the column, and only where the step is accepted
        for its Jacobian at the same theta, so a rejected step costs the column alone."""
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        kept = next((ev for ev in self._evaluations if ev.key == key), None)
        if kept is None:
            kept = evaluate(self, theta)
            self._evaluations = self._evaluations[-(KEPT_EVALUATIONS - 1):] + [kept]
        return kept

    def columns_jacobian(self, theta: np.ndarray, instrument: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Capillary dot column (points,) and its derivatives (points x 6) by D, dispersion, strain, dB and the
        instrument's Gaussian FWHM squared and Lorentzian FWHM: strain and dB analytic (the cubic kernel's derivative), the
        widths exact (the Voigt transfer function's), D and dispersion by forward differences of the weights.
        ``instrument`` False: the widths' columns are left 0 (held widths need none). Builds on the column of the same
        theta where it was just computed (:meth:`_capillary`)."""
        if not self.analytic:
            raise ValueError("analytic derivatives are available for the capillary geometry only")
        ev = self._capillary(theta)
        if ev.jacobian is None or (instrument and not ev.jacobian_instrument):
            ev.jacobian, ev.jacobian_instrument = jacobian(self, ev, np.asarray(theta, dtype=float), instrument), instrument
        return ev.column, ev.jacobian

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
