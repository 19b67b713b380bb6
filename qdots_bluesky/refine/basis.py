"""Per-cluster DSE bases for refinement, cached on disk per (material, wavelength, Q grid, settings).

A refinement needs the patterns of every series cluster of the material at the data's wavelength (the
form factors carry f', f'' of that wavelength) on an equispaced Q grid; the population patterns of any mean
diameter, dispersion and strain are then weighted sums (:mod:`~qdots_bluesky.sim.physics.cluster_basis`).
The basis is built through :func:`~qdots_bluesky.sim.physics.cluster_basis.build_cluster_basis` and stored as
one ``.npz`` beside the pair-histogram cache (:func:`~qdots_bluesky.sim.physics.cache.cache_dir`, which respects
``QDOTS_CACHE_DIR``; ``off`` disables the disk cache): a new wavelength costs one basis (a few seconds for PbS
up to 21 nm once the histograms are cached), a known one a file read.

Units: Q in 1/A, wavelength in A, diameters in nm.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..sim.physics.cache import cache_dir, structure_key
from ..sim.physics.cluster_basis import ClusterBasis, build_cluster_basis
from ..sim.physics.habits import CARVING_VERSION, check_habit
from ..sim.physics.library import LibrarySettings
from ..sim.physics.materials import CrystalStructure, get_structure
from ..units import check_wavelength

__all__ = ["BASIS_FORMAT", "DEFAULT_Q_STEP", "default_q_grid", "refinement_basis", "basis_cache_path", "material_habit"]

#: Version of the cached file layout.
BASIS_FORMAT = 1
#: Step (1/A) of the default basis grid: that of the standardized 5004-point grid over 1-15 1/A. The narrowest
#: peaks of the default series (21 nm) are ~0.03 1/A wide: 10 points per FWHM, read by cubic convolution.
DEFAULT_Q_STEP = 14.0 / 5003
#: Default Q range (1/A) of a basis, cut at 99.5 % of 4 pi / lambda.
DEFAULT_Q_RANGE = (0.8, 15.2)

_MEMORY: dict[str, ClusterBasis] = {}


def material_habit(material: str, habit: str, allow_auto: bool = True) -> str:
    """The canonical name of ``habit`` for ``material`` (built-in name or CIF path), or 'auto' where ``allow_auto``;
    ValueError for an unknown habit or a faceted one of a non-cubic structure
    (:func:`~qdots_bluesky.sim.physics.habits.check_habit`)."""
    if allow_auto and str(habit).strip().lower() == "auto":
        return "auto"
    return check_habit(habit, get_structure(material), also_accepted="auto" if allow_auto else "")


def default_q_grid(wavelength_a: float, q_range: tuple[float, float] = DEFAULT_Q_RANGE,
                   step: float = DEFAULT_Q_STEP) -> np.ndarray:
    """The equispaced basis grid (1/A) for a wavelength (A): ``q_range`` cut at 0.995 x 4 pi / lambda."""
    check_wavelength(wavelength_a)
    q0, q1 = float(q_range[0]), min(float(q_range[1]), 0.995 * 4.0 * np.pi / wavelength_a)
    if not (0 < q0 < q1) or step <= 0:
        raise ValueError(f"basis Q range {q_range!r} at {wavelength_a} A with step {step!r} is empty; accepted: "
                         "0 < q_min < q_max <= 4 pi / lambda and a positive step")
    n = int(np.floor((q1 - q0) / step + 1e-9)) + 1
    return q0 + step * np.arange(n)


def _key(structure: CrystalStructure, settings: LibrarySettings, q: np.ndarray, habit: str = "sphere") -> str:
    h = hashlib.sha256()
    if habit != "sphere":  # the reference series keeps the keys it had before habits
        h.update(f"{habit}-c{CARVING_VERSION}".encode())
    h.update(structure_key(structure).encode())
    # every setting (wavelength, largest cluster, Compton, precision, ...): any change makes a new basis
    h.update(json.dumps(asdict(settings), sort_keys=True, default=str).encode())
    h.update(np.round(q, 9).tobytes())
    return h.hexdigest()[:20]


def basis_cache_path(structure: CrystalStructure, settings: LibrarySettings, q: np.ndarray,
                     habit: str = "sphere") -> Path | None:
    """Path of the cached basis file, or None when the disk cache is off."""
    directory = cache_dir()
    if directory is None:
        return None
    name = "".join(c if c.isalnum() else "_" for c in structure.name)[:40]
    tag = "" if habit == "sphere" else f"-{habit}"
    return directory / (f"refine-basis-v{BASIS_FORMAT}-{name}{tag}-{settings.wavelength_a:.6f}A-"
                        f"{_key(structure, settings, q, habit)}.npz")


def refinement_basis(material: str, wavelength_a: float, q: np.ndarray | None = None, *,
                     max_diameter_nm: float = 21.0, progress: bool = False, habit: str = "sphere") -> ClusterBasis:
    """The cluster basis of ``material`` (a built-in name or a CIF path) at ``wavelength_a`` (A) on ``q``
    (equispaced, 1/A; default :func:`default_q_grid`), clusters up to ``max_diameter_nm`` (nm) of ``habit``
    (:mod:`~qdots_bluesky.sim.physics.habits`; default the near-spherical reference series; a faceted one costs its
    cluster histograms once, 10-30 s for PbS up to 21 nm, then ~1 s per further wavelength).

    Looked up in memory, then on disk, else built with ``build_cluster_basis`` and stored. Patterns are float64.
    """
    check_wavelength(wavelength_a)
    structure = get_structure(material)
    habit = check_habit(habit, structure)
    q = default_q_grid(wavelength_a) if q is None else np.asarray(q, dtype=float)
    if q.ndim != 1 or q.size < 10 or not np.all(np.isfinite(q)):
        raise ValueError(f"basis Q grid of shape {q.shape}; accepted: a finite 1-D equispaced grid of >= 10 points")
    steps = np.diff(q)
    if np.any(steps <= 0) or np.ptp(steps) > 1e-6 * steps.mean():
        raise ValueError("basis Q grid is not equispaced and increasing; accepted: an equispaced grid in 1/A")
    if not 0.5 < max_diameter_nm <= 40.0:
        raise ValueError(f"max_diameter_nm {max_diameter_nm!r}; accepted: 0.5 to 40 nm")
    settings = LibrarySettings(material=material, wavelength_a=float(wavelength_a), max_diameter_nm=float(max_diameter_nm))
    key = f"{_key(structure, settings, q, habit)}|{cache_dir()}"
    if key in _MEMORY:
        return _MEMORY[key]
    path = basis_cache_path(structure, settings, q, habit)
    basis = None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                basis = ClusterBasis(q=np.asarray(z["q"], float), n=np.asarray(z["n"]), unit_nm=float(z["unit_nm"]),
                                     crystal=np.asarray(z["crystal"], float), compton=np.asarray(z["compton"], float),
                                     structure=structure, wavelength_a=float(z["wavelength_a"]), habit=habit)
        except (OSError, KeyError, ValueError):
            basis = None  # a broken cache file is rebuilt below
    if basis is None:
        built = build_cluster_basis(settings, q, progress=progress, habit=habit)
        basis = ClusterBasis(q=built.q, n=built.n, unit_nm=built.unit_nm, crystal=np.asarray(built.crystal, float),
                             compton=np.asarray(built.compton, float), structure=built.structure,
                             wavelength_a=float(wavelength_a), habit=habit)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
                np.savez(tmp, q=basis.q, n=basis.n, unit_nm=basis.unit_nm, crystal=basis.crystal.astype(np.float32),
                         compton=basis.compton.astype(np.float32), wavelength_a=basis.wavelength_a)
                os.replace(tmp, path)
            except OSError:
                pass  # a read-only cache is not an error
    _MEMORY[key] = basis
    return basis


def decimated_basis(basis: ClusterBasis, stride: int) -> ClusterBasis:
    """The basis on every ``stride``-th point of its Q grid (the rows are point values of the DSE, so this is exact
    sampling), kept on the basis: a fit on bins of several points reads its model from a grid that is still finer
    than the bins, at a fraction of the cost of the convolution and the reading."""
    if stride <= 1:
        return basis
    cache = basis.__dict__.setdefault("_decimated", {})
    if stride not in cache:
        coarse = ClusterBasis(q=basis.q[::stride], n=basis.n, unit_nm=basis.unit_nm,
                              crystal=np.ascontiguousarray(basis.crystal[:, ::stride]),
                              compton=np.ascontiguousarray(basis.compton[:, ::stride]), structure=basis.structure,
                              wavelength_a=basis.wavelength_a, habit=basis.habit)
        coarse._f_sq = basis.form_factor_sq()[::stride]
        cache[stride] = coarse
    return cache[stride]
