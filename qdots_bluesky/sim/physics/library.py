"""The training library: DSE patterns of a grid of populations (mean size x dispersion x strain).

Per-cluster work is done once: every series cluster's exact pair histogram is computed (or read
from the cache) and merged onto one set of distances; each strain then needs one pass of sinc sums
over all clusters, and every population is a number-weighted sum of cluster patterns (the population
kernel :func:`~qdots_bluesky.sim.physics.population.population_patterns`). Patterns,
their coherent (crystal) part and their Compton part are stored in one HDF5 file together with
every parameter; see ``LIBRARY_FORMAT`` for the layout.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from ... import __version__
from ...units import tth_to_q
from .clusters import equal_volume_diameter_nm
from .distribution import DEFAULT_MAX_DIAMETER_NM
from .dse import check_q
from .materials import get_structure
from .population import population_patterns, population_weights, series_pair_table

LIBRARY_FORMAT = "qdots-library/1"
_LAYOUT = """
/                       attrs: format, program_version, created, material, settings (JSON)
/parameters/            one row per pattern: mean_diameter_nm, dispersion, strain, lattice_ratio,
                        population (index into /populations)
/populations/           mean_diameter_nm, dispersion, weights (populations x clusters)
/clusters/              n, diameter_nm, n_atoms
/grids/<name>/          q (1/A) [, tth_deg]; total, crystal, compton (patterns x points, float32)
"""
__doc__ += "\nLayout::\n" + _LAYOUT


def reference_lattice_ratios() -> list[float]:
    """The 19 a/a_bulk values of the reference library, 0.9975 to 1.0051."""
    return [round(float(v), 6) for v in np.linspace(0.9975, 1.0051, 19)]


@dataclass
class LibrarySettings:
    """Everything that defines a library; stored in the file."""

    material: str = "PbS"
    mean_diameters_nm: list[float] = field(default_factory=lambda: [round(2.0 + 0.5 * i, 3) for i in range(17)])
    dispersions: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.15, 0.20])
    lattice_ratios: list[float] = field(default_factory=reference_lattice_ratios)
    wavelength_a: float = 0.56
    tth_grid_deg: tuple[float, float, float] | None = (0.5, 84.0, 0.0036)
    q_grid: tuple[float, float, int] | None = (1.0, 15.0, 5004)
    compton: bool = True
    max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM
    precision: str = "fast"
    recoil_exponent: float = 2.0

    def grids(self) -> dict[str, dict[str, np.ndarray]]:
        """The Q (and 2theta) arrays of every grid the library is computed on."""
        out: dict[str, dict[str, np.ndarray]] = {}
        if self.q_grid is not None:
            q0, q1, n = self.q_grid
            out["q"] = {"q": np.linspace(q0, q1, int(n))}
        if self.tth_grid_deg is not None:
            t0, t1, step = self.tth_grid_deg
            tth = t0 + step * np.arange(int(np.floor((t1 - t0) / step + 1e-9)) + 1)
            out["tth"] = {"q": tth_to_q(tth, self.wavelength_a), "tth_deg": tth}
        if not out:
            raise ValueError("a library needs at least one grid: a Q grid, a 2theta grid or both")
        for g in out.values():
            check_q(g["q"])
        return out


def library_patterns(q: np.ndarray, settings: LibrarySettings, clusters, weights: np.ndarray, strains: np.ndarray,
                     progress: bool = False, label: str = "q") -> tuple[np.ndarray, np.ndarray]:
    """Crystal and Compton parts (float32, patterns x Q) of populations ``weights`` at ``strains`` with the
    settings' wavelength, Compton switch, precision and recoil exponent: :func:`~.population.population_patterns`."""
    return population_patterns(q, clusters, weights, strains, settings.wavelength_a, compton=settings.compton,
                               precision=settings.precision, recoil_exponent=settings.recoil_exponent,
                               dtype=np.float32, progress=progress, label=label)


def build_library(settings: LibrarySettings, path: str | Path, progress: bool = True) -> Path:
    """Compute the library of ``settings`` and write it to an HDF5 file at ``path``."""
    path = Path(path)
    structure = get_structure(settings.material)
    grids = settings.grids()
    strains = np.asarray(settings.lattice_ratios, dtype=float) - 1.0
    if strains.size == 0 or not settings.mean_diameters_nm or not settings.dispersions:
        raise ValueError("a library needs at least one mean diameter, one dispersion and one lattice ratio")
    # validate every population before any heavy work
    populations = [(m, d, population_weights(structure, m, d, float(strains[np.argmax(np.abs(strains))]), settings.max_diameter_nm))
                   for m in settings.mean_diameters_nm for d in settings.dispersions]
    n_all = np.unique(np.concatenate([p.n for _, _, p in populations]))
    weights = np.zeros((len(populations), n_all.size))
    for row, (_, _, p) in enumerate(populations):
        weights[row, np.searchsorted(n_all, p.n)] = p.weights
    clusters = series_pair_table(structure, n_all, progress)
    results = {name: library_patterns(g["q"], settings, clusters, weights, strains, progress, name)
               for name, g in grids.items()}
    _write_library(path, settings, structure, populations, n_all, clusters.cluster_atoms, weights, strains, grids, results)
    return path


def _write_library(path, settings, structure, populations, n_all, cluster_atoms, weights, strains, grids, results) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    n_strain = len(strains)
    with h5py.File(tmp, "w") as f:
        f.attrs.update(format=LIBRARY_FORMAT, program_version=__version__, material=structure.name,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       settings=json.dumps(asdict(settings)), layout=_LAYOUT)
        par = f.create_group("parameters")
        pop_index = np.repeat(np.arange(len(populations)), n_strain)
        par["population"] = pop_index
        par["mean_diameter_nm"] = np.repeat([m for m, _, _ in populations], n_strain)
        par["dispersion"] = np.repeat([d for _, d, _ in populations], n_strain)
        par["strain"] = np.tile(strains, len(populations))
        par["lattice_ratio"] = np.tile(strains + 1.0, len(populations))
        pops = f.create_group("populations")
        pops["mean_diameter_nm"] = [m for m, _, _ in populations]
        pops["dispersion"] = [d for _, d, _ in populations]
        pops["weights"] = weights
        cl = f.create_group("clusters")
        cl["n"] = n_all
        cl["diameter_nm"] = equal_volume_diameter_nm(structure, n_all)
        cl["n_atoms"] = cluster_atoms.sum(axis=1)
        for name, g in grids.items():
            grp = f.create_group(f"grids/{name}")
            grp["q"] = g["q"]
            grp["q"].attrs["units"] = "1/angstrom"
            if "tth_deg" in g:
                grp["tth_deg"] = g["tth_deg"]
                grp["tth_deg"].attrs.update(units="degrees", wavelength_a=settings.wavelength_a)
            crystal, compton = results[name]
            for key, data in (("total", crystal + compton), ("crystal", crystal), ("compton", compton)):
                ds = grp.create_dataset(key, data=data, chunks=(1, data.shape[1]))
                ds.attrs["units"] = "electron units per nanocrystal (number-weighted mean)"
    os.replace(tmp, path)


@dataclass
class Library:
    """A library read back from its file, on one grid."""

    path: Path
    grid: str
    q: np.ndarray
    total: np.ndarray
    crystal: np.ndarray
    compton: np.ndarray
    mean_diameter_nm: np.ndarray
    dispersion: np.ndarray
    strain: np.ndarray
    population: np.ndarray
    settings: dict
    attrs: dict

    @property
    def n_patterns(self) -> int:
        return int(self.total.shape[0])


def library_content_sha256(path: str | Path) -> str:
    """SHA-256 of a library's numbers (every grid and parameter array, in a fixed order), not of the file:
    a rebuilt library with the same settings has the same content checksum though its creation date differs."""
    import hashlib

    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
        for name in sorted(names):
            h.update(name.encode())
            h.update(np.ascontiguousarray(f[name][()]).tobytes())
        h.update(str(f.attrs.get("settings", "")).encode())
    return h.hexdigest()


def load_library(path: str | Path, grid: str = "q") -> Library:
    """Read a library file (one grid: 'q' or 'tth'); ValueError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"library file {str(path)!r} does not exist; build one with `qdots library build`")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{str(path)!r} is not a readable HDF5 library file: {exc}") from exc
    with f:
        if f.attrs.get("format") != LIBRARY_FORMAT:
            raise ValueError(f"{str(path)!r} is not a qdots library (format {f.attrs.get('format')!r}, expected {LIBRARY_FORMAT!r})")
        if f"grids/{grid}" not in f:
            raise ValueError(f"library {str(path)!r} has no {grid!r} grid; it has: {', '.join(f['grids'])}")
        g = f[f"grids/{grid}"]
        p = f["parameters"]
        return Library(path, grid, g["q"][()], g["total"][()], g["crystal"][()], g["compton"][()],
                       p["mean_diameter_nm"][()], p["dispersion"][()], p["strain"][()], p["population"][()],
                       json.loads(f.attrs["settings"]), {k: f.attrs[k] for k in f.attrs})
