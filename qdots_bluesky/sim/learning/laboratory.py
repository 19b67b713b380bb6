"""The laboratory measurement of the augmentation (step 3 of :mod:`.augment`): Cu K-alpha, flat plate, dried film.

Laboratory samples are measured in 2theta on an axis of their own (:meth:`LabMeasurement.axis`); on the crystal
part of the pattern, before the solvent is mixed in (step 4):

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

The instrument physics (intensity factors, K-alpha doublet, Scherrer width, preferred-orientation correction)
lives in :mod:`qdots_bluesky.sim.physics.instrument`, the peak profiles in :mod:`qdots_bluesky.sim.physics.profiles`;
this module applies them with the parameters drawn by :mod:`.augment_draws`.

Units: Q in 1/A, 2theta in degrees, wavelength in A, diameters in nm.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ...units import tth_to_q
from ..physics.instrument import (flat_plate_factor, kalpha_doublet_matrix, po_correction, powder_reflections,
                                  scherrer_fwhm_q)
from ..physics.materials import CrystalStructure
from ..physics.profiles import instrument_profile
from ..physics.reflections import family_cosines, family_march_dollase
from .augment_settings import AugmentationSettings

__all__ = ["LabMeasurement", "direction_label", "parse_direction"]


def direction_label(d) -> str:
    """'111' for (1, 1, 1); indices beyond 0-9 are separated by spaces."""
    return "".join(str(int(v)) for v in d) if all(0 <= int(v) <= 9 for v in d) else " ".join(str(int(v)) for v in d)


def parse_direction(d) -> tuple[int, int, int]:
    """A preferred-orientation direction from three indices or a string like '111', '<1 1 0>' or '1,0,0'."""
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


class LabMeasurement:
    """The laboratory axes and instrument of an :class:`~qdots_bluesky.sim.learning.augment.Augmenter`.

    ``settings``: the augmentation settings; ``library_q``: the library's equispaced Q grid (1/A) and ``h`` its
    step; ``structure``: the material (its reflections place the preferred-orientation correction). Caches the
    axes (with their K-alpha doublet matrices), the reflection table and the family cosines of each direction; it
    does not depend on the patterns, so copies of an augmenter share it.
    """

    def __init__(self, settings: AugmentationSettings, library_q: np.ndarray, h: float, structure: CrystalStructure):
        self.settings = settings
        self.q = library_q
        self.h = h
        self.structure = structure
        self._po_cache: dict[tuple, np.ndarray] = {}
        self._lab_cache: dict[tuple, Any] = {}
        self._reflections = None
        self._lock = threading.Lock()

    def axis(self, tth_end: float, mono: bool):
        """The 2theta axis ending at tth_end (deg), its K-alpha1 Q, and the library columns j0:j1 with the matrix W
        that maps them onto it (K-alpha doublet and intensity factor, with a monochromator or not)."""
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

    def reflection_table(self):
        """The structure's reflection families up to the largest lab Q (K-alpha1), from powder_reflections."""
        if self._reflections is None:
            qmax = float(min(self.q[-1], 4 * np.pi / min(self.settings.lab_wavelengths_a))) + 0.5
            self._reflections = powder_reflections(self.structure, qmax)
        return self._reflections

    def family_factors(self, direction, r: np.ndarray) -> np.ndarray:
        """March-Dollase factor of every reflection family along direction, for each r: (len(r), families)."""
        refl, _, _ = self.reflection_table()
        key = tuple(direction)
        cos = self._po_cache.get(key)
        if cos is None:
            cos = family_cosines(self.structure, refl, direction)
            with self._lock:
                self._po_cache[key] = cos
        return family_march_dollase(self.structure, refl, direction, np.asarray(r, float), cosines=cos)

    def nanocrystals(self, key, lib_idx, crystal, compton, mean_diameter_nm, strain, p, rows, directions):
        """Patterns ``lib_idx`` of the library arrays measured on the lab axis of ``key`` (("lab", tth_end, mono)):
        texture on the crystal part, K-alpha doublet and intensity factor, instrument profile; float32, mean 1 per
        row. ``p`` holds the drawn parameters of the samples ``rows``, ``directions`` the texture directions."""
        _, tth_end, mono = key
        ax = self.axis(tth_end, mono)
        j0, j1, W = ax["j0"], ax["j1"], ax["W"]
        crys = crystal[lib_idx, j0:j1]
        r = p["po_r"][rows]
        textured = r != 1.0
        if textured.any():
            refl, rq, rint = self.reflection_table()
            P = np.ones((rows.size, len(refl)))
            for d_i in np.unique(p["_po_dir_index"][rows[textured]]):
                sel = textured & (p["_po_dir_index"][rows] == d_i)
                P[sel] = self.family_factors(directions[int(d_i)], r[sel])
            free = textured & p["_po_family"][rows]
            P[free] = np.exp(p["_po_family_log_scale"][rows[free]])
            sigma = self.settings.po_window_fwhm_factor * scherrer_fwhm_q(mean_diameter_nm[lib_idx])
            C = po_correction(self.q[j0:j1], rq, rint, P, sigma, strain[lib_idx])
            crys = crys * C
        nc_lib = crys + compton[lib_idx, j0:j1]
        nc = np.asarray(W @ np.ascontiguousarray(nc_lib.T, dtype=np.float32)).T
        nc = instrument_profile(nc, self.settings.lab_tth_step_deg, p["_lab_gauss_fwhm"][rows],
                                p["_lab_lorentz_fwhm"][rows])
        nc = nc / nc.mean(axis=1, keepdims=True)
        return np.ascontiguousarray(nc, dtype=np.float32)

    def axis_info(self, key) -> dict[str, Any]:
        """The measured axis of a lab group (x in 2theta, its K-alpha1 Q) and the map of library-grid patterns onto
        it (mean 1)."""
        _, tth_end, mono = key
        ax = self.axis(tth_end, mono)
        j0, j1, W = ax["j0"], ax["j1"], ax["W"]

        def transform(Y):
            out = np.asarray(W @ np.ascontiguousarray(Y[:, j0:j1].T)).T
            return out / out.mean(axis=1, keepdims=True)
        return {"x": ax["tth"], "unit": "tth", "wavelength": self.settings.lab_wavelengths_a[0], "q": ax["q1"],
                "transform": transform}

    def __getstate__(self):  # picklable for DataLoader workers: no lock
        d = dict(self.__dict__)
        d["_lock"] = None
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._lock = threading.Lock()
