"""Physics-informed augmentation: clean DSE library patterns -> measured-like, standardized inputs.

Runs on the fly in a training loop (numpy only, vectorized, seeded). Every sample goes through
the same standardization as a prediction (:func:`qdots_bluesky.standardize.standardize_batch`),
from the x axis it would have been measured on. Each effect, in the order applied, with the module
that holds its exact definition:

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

1. **Measured axis** (:mod:`.augment_draws`): synchrotron samples on the library's Q grid or a part
   of it (Q-range truncation, coarser steps), laboratory samples on a 2theta axis at Cu K-alpha;
   the axis draws are shared by blocks of samples, and all ranges are quantized to a fixed set of
   axes whose standardization operators :meth:`Augmenter.warm_up` builds up front.

2. **Nanocrystal pattern** NC = crystal + Compton of the library pattern (electron units). (The
   continuous populations of training, :mod:`~qdots_bluesky.sim.physics.cluster_basis`, come with their
   microstrain and synchrotron instrument profile already applied.)

3. **Laboratory instrument** (:mod:`.laboratory`; lab samples only, on the crystal part before step 4):
   preferred orientation of a dried film (March-Dollase or a free scale per reflection family),
   instrument profile, K-alpha doublet, polarization.

4. **Solvent** (:mod:`.mixing`): NC and a solvent S, each of equal area on the measured axis, mixed as
   Y = f NC / <NC> + (1 - f) S / <S>; blanks (f = 0) and empty blanks (no solvent either).

5. **Background** (:mod:`.mixing`): a smooth tilt and a capillary/glass-like hump added to Y.

6. **Counting noise** (:mod:`.noise`): Poisson counts for a whole-pattern SNR.

7. **Standardization** of (x, counts) with :func:`~qdots_bluesky.standardize.standardize_batch`:
   Q in 1..15, padding a short range with the mean of the 5 outermost points, area-preserving
   interpolation of bin averages (coarse axes: the bin averages of step 1) / cell average onto
   5004 points, mean 1.

The settings of every step are the fields of :class:`AugmentationSettings` (:mod:`.augment_settings`).

Units: Q in 1/A, 2theta in degrees, wavelength in A, diameters in nm.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import numpy as np

from ...standardize import QGrid, reserve_operator_cache, standardize_batch
from ...units import tth_to_q
from ..physics.instrument import CU_KA1_A, CU_KA2_A, lp_factor, po_correction, polarization_factor, scherrer_fwhm_q
from ..physics.lattice_jitter import mean_squared_form_factor, rescale_lattice
from ..physics.materials import CrystalStructure, get_structure
from ..physics.profiles import instrument_profile
from .augment_draws import axis_length, draw_parameters, fit_low_end, quantize, resolve_axes
from .augment_settings import AugmentationSettings
from .laboratory import LabMeasurement, direction_label, parse_direction
from .mixing import SolventSet, mix
from .noise import counting_noise, expected_counts, noise_block_rows

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

        # quantized value sets
        s = settings
        self._q_max_values = np.unique(quantize(np.arange(s.q_max_range[0], s.q_max_range[1] + s.q_max_step, s.q_max_step),
                                                s.q_max_range[0], s.q_max_range[1], s.q_max_step))
        self._lab_ends = np.unique(quantize(np.arange(s.lab_tth_end_range[0], s.lab_tth_end_range[1] + s.lab_tth_end_step,
                                                      s.lab_tth_end_step), *s.lab_tth_end_range, s.lab_tth_end_step))
        # solvents on the library grid (built-in at the library wavelength; blanks as measured) and on each axis
        self._solvents = SolventSet(settings, q, self.lib_grid, self.wavelength_a, solvent_blanks, self.n_axes())
        self.solvent_names: list[str] = self._solvents.names
        # the laboratory axes and instrument; reflections for the preferred orientation
        self._lab = LabMeasurement(settings, q, self.h, self.structure)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = -1
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
            v = np.unique(quantize(np.arange(rng_[0], rng_[1] + step, step), rng_[0], rng_[1], step))
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
            i0 = fit_low_end(self.q, self.h, i0, i1)
            keys.update(("syn", int(x), int(y), int(n)) for x, y in zip(i0, i1) for n in ns)
        if s.lab_fraction > 0:
            monos = [m for m, ok in ((False, s.lab_monochromator_fraction < 1), (True, s.lab_monochromator_fraction > 0)) if ok]
            keys.update(("lab", float(e), m) for e in self._lab_ends for m in monos)
        reserve_operator_cache(2 * len(keys) + 16)
        all_solvents = np.arange(len(self.solvent_names))
        for key in sorted(keys):
            axis = self._synchrotron_axis(key) if key[0] == "syn" else self._lab.axis_info(key)
            y = axis["transform"](self.total[:1])
            standardize_batch(axis["x"], y, x_unit=axis["unit"], wavelength=axis.get("wavelength"), grid=self.grid)
            if self.solvent_names:
                self._solvents.rows(key, all_solvents, axis["transform"])
        return len(keys)

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
        p = draw_parameters(self.settings, n, rng, n_solvents=len(self.solvent_names),
                            n_families=len(self._lab.reflection_table()[0]))
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
            d = parse_direction(po_direction)
            if d not in directions:
                directions = directions + [d]
            p["_po_dir_index"] = np.full(n, directions.index(d))
        if not self.solvent_names:
            p["fraction"] = np.ones(n)
            p["_empty"] = np.zeros(n, dtype=bool)
        resolve_axes(p, {"q_max": q_max, "q_min": q_min, "n_points": n_points}, s, self.q, self.h)
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
        sizes = [(len(rows), axis_length(key, self.settings)) for key, rows in group_list]
        block_rows = [noise_block_rows(cols) for _, cols in sizes]
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
            gain = None
            if key[0] == "syn" and self.settings.coarse_keeps_exposure:
                # the same exposure binned more coarsely: a bin k library steps wide holds k times the counts
                native = (p["_i1"][rows_a] - p["_i0"][rows_a] + 1).astype(float)
                gain = np.maximum(native / p["n_points"][rows_a], 1.0)
            lam, noiseless = expected_counts(Y, p["snr"][rows_a], self.settings.snr_reference, gain)
            noisy = np.empty_like(Y)
            futures = counting_noise(lam, noisy, seeds, b_rows, self.settings.poisson_normal_above, pool)
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
            "po_direction": np.array([direction_label(directions[j]) if (lab[i] and p["po_r"][i] != 1.0) else ""
                                      for i, j in enumerate(p["_po_dir_index"])], dtype=object),
            "po_r": np.where(lab, p["po_r"], 1.0).astype(float),
            "background": p["background"].astype(float),
            "tth_max": np.where(lab, p["tth_max"], np.nan).astype(float),
            "monochromator": (lab & p["monochromator"]).astype(bool),
            "index": idx.copy(),
        }
        return X, meta

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
        solv = self._solvents.rows(key, p["solvent_index"][rows], axis["transform"])
        Y = mix(nc, solv, p, rows, axis["q"])
        return Y, axis

    def _lab_group(self, key, lib_idx, p, rows, directions):
        nc = self._lab.nanocrystals(key, lib_idx, self.crystal, self.compton, self.mean_diameter_nm, self.strain, p,
                                    rows, directions)
        axis = self._lab.axis_info(key)
        solv = self._solvents.rows(key, p["solvent_index"][rows], axis["transform"])
        Y = mix(nc, solv, p, rows, axis["q"])
        return Y, axis

    # ---------------------------------------------------------------- threads and pickling
    def _get_pool(self) -> ThreadPoolExecutor | None:
        if self.settings.n_threads <= 1:
            return None
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child has no pool threads
                self._pool = ThreadPoolExecutor(max_workers=self.settings.n_threads, thread_name_prefix="qdots-augment")
                self._pool_pid = os.getpid()
            return self._pool

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

