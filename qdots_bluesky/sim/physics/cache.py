"""On-disk cache of pair histograms: exact ones of series clusters (a few hundred kB each at most), and any
histogram under a key (:func:`cached_histogram`, e.g. the metal clusters of :mod:`.metal_basis`).

The histogram of a cluster never changes, so it is computed once per machine.
Location: $QDOTS_CACHE_DIR, else ~/.cache/qdots_bluesky. Set QDOTS_CACHE_DIR=off to disable.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

from .habits import CARVING_VERSION, build_habit_cluster, check_habit
from .materials import CrystalStructure
from .pair_histogram import PairHistogram, Species, lattice_pair_histogram

CACHE_FORMAT = 1


def cache_dir() -> Path | None:
    value = os.environ.get("QDOTS_CACHE_DIR", "")
    if value.lower() == "off":
        return None
    return Path(value) if value else Path.home() / ".cache" / "qdots_bluesky"


def structure_key(structure: CrystalStructure) -> str:
    """Hash of everything in a structure that changes its pair histograms."""
    h = hashlib.sha256()
    for arr in (structure.cell, structure.fractional_positions, structure.occupancies, structure.b_iso):
        h.update(np.round(np.asarray(arr, dtype=float), 9).tobytes())
    h.update(",".join(structure.elements).encode())
    return h.hexdigest()[:16]


def series_histogram(structure: CrystalStructure, n: int, habit: str = "sphere") -> PairHistogram:
    """Exact pair histogram of series cluster n (of a :mod:`~.habits` habit; default the near-spherical reference
    series), from the cache when present."""
    habit = check_habit(habit, structure)
    directory = cache_dir()
    path = None
    if directory is not None:
        tag = "" if habit == "sphere" else f"-{habit}-c{CARVING_VERSION}"
        path = directory / f"hist-v{CACHE_FORMAT}-{structure.name}-{structure_key(structure)}{tag}-n{n}.npz"
    species = [Species(e, float(o), float(b)) for e, o, b in zip(structure.elements, structure.occupancies,
                                                                  structure.b_iso)]
    label = f"{structure.name} series n={n}" if habit == "sphere" else f"{structure.name} {habit} n={n}"
    return _cached(path, lambda: lattice_pair_histogram(build_habit_cluster(structure, n, habit)), label, species)


def cached_histogram(key: str, compute: Callable[[], PairHistogram]) -> PairHistogram:
    """The histogram stored under ``key`` (any string naming everything it depends on), else ``compute()`` stored.

    Species (element, occupancy, B), exactness and bin width are stored with the counts.
    """
    directory = cache_dir()
    path = None
    if directory is not None:
        path = directory / f"hist-key-v{CACHE_FORMAT}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    return _cached(path, compute, key)


def _cached(path: Path | None, compute: Callable[[], PairHistogram], label: str,
            species: list[Species] | None = None) -> PairHistogram:
    """The histogram in ``path`` (its species from the file, or ``species`` for files that hold none), else
    ``compute()`` written there; no path: computed. A broken file is recomputed, a read-only cache is no error."""
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if "elements" in z:
                    species = [Species(str(e), float(o), float(b))
                               for e, o, b in zip(z["elements"], z["occupancies"], z["b_iso"])]
                width = float(z["bin_width_a"]) if "bin_width_a" in z else 0.0
                return PairHistogram(species, z["atoms_per_species"], z["distances"], z["counts"],
                                     [tuple(int(v) for v in p) for p in z["pairs"]],
                                     exact=bool(z["exact"]) if "exact" in z else True,
                                     bin_width_a=width if width > 0 else None,
                                     info={"cluster": label, "cached": str(path)})
        except (OSError, KeyError, ValueError):
            pass  # a broken cache file is recomputed below
    hist = compute()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, distances=hist.distances, counts=hist.counts, atoms_per_species=hist.atoms_per_species,
                     pairs=np.asarray(hist.pairs), elements=np.asarray([s.element for s in hist.species]),
                     occupancies=np.asarray([s.occupancy for s in hist.species]),
                     b_iso=np.asarray([s.b_iso for s in hist.species]), exact=hist.exact,
                     bin_width_a=hist.bin_width_a or 0.0)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home is not an error: the histogram is still returned
    return hist
