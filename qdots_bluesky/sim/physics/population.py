"""Powder patterns of quantum-dot populations: log-normal size distributions over series clusters.

:func:`population_patterns` is the one population kernel of the project: cluster pair histograms (merged onto one
set of distances, :class:`ClusterPairTable`) x number weights x form factors, at any number of strains. The library,
the per-cluster basis, :func:`simulate_population` and the simulated detector all compute their patterns with it.
Q in 1/A, wavelength in A, diameters in nm, strain fractional, intensities in electron units per nanocrystal.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .cache import series_histogram
from .clusters import check_cluster_size, equal_volume_diameter_nm
from .distribution import DEFAULT_MAX_DIAMETER_NM, check_distribution, clusters_needed, lognormal_number_weights
from .dse import BLOCK_ELEMENTS, PatternComponents, check_q, compton_per_species, sin_over_x, species_factors
from .materials import CrystalStructure
from .pair_histogram import PairHistogram, Species, merge_distances, species_pairs

#: Accepted isotropic strain (fractional change of the lattice parameter).
MAX_ABS_STRAIN = 0.10


def check_strain(strain: float) -> None:
    """Raise ValueError unless ``strain`` is a finite fractional lattice change within +-MAX_ABS_STRAIN."""
    if strain is None or not np.isfinite(strain) or abs(strain) > MAX_ABS_STRAIN:
        raise ValueError(f"strain must be a fractional lattice change within +-{MAX_ABS_STRAIN} (+-10 %), got {strain!r}")


@dataclass
class Population:
    """A log-normal population over series clusters: indices n, number weights, diameters (nm)."""

    n: np.ndarray
    weights: np.ndarray
    diameters_nm: np.ndarray


def population_weights(structure: CrystalStructure, mean_nm: float, dispersion: float, strain: float = 0.0,
                       max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM) -> Population:
    """Validate a population before any heavy work and give its clusters and number weights."""
    check_distribution(mean_nm, dispersion)
    check_strain(strain)
    unit = float(equal_volume_diameter_nm(structure, 1))
    n = clusters_needed(unit, mean_nm, dispersion, max_diameter_nm)
    check_cluster_size(structure, float(n.max()) ** 3 * structure.n_sites,
                       f"a population of mean {mean_nm} nm and dispersion {dispersion} (largest cluster n={n.max()})")
    return Population(n, lognormal_number_weights(n, unit, mean_nm, dispersion), n * unit)


@dataclass
class ClusterPairTable:
    """Pair histograms of several clusters merged onto one set of distances: the input of :func:`population_patterns`.

    ``table[d, c * n_pairs + k]`` counts the ordered pairs of species pair ``pairs[k]`` of cluster ``c`` at
    ``distances[d]`` (A); ``cluster_atoms[c, s]`` is the number of atoms of species ``s`` in cluster ``c``.
    """

    species: list[Species]
    pairs: list[tuple[int, int]]
    distances: np.ndarray  # (distances,) A
    table: np.ndarray  # (distances, clusters * pairs), columns cluster-major, pair-minor
    cluster_atoms: np.ndarray  # (clusters, species)

    @property
    def n_clusters(self) -> int:
        return int(self.cluster_atoms.shape[0])


def merge_cluster_histograms(hists: list[PairHistogram]) -> ClusterPairTable:
    """Merge the pair histograms of clusters of one structure onto their common set of distances."""
    n_pairs = len(hists[0].pairs)
    d2_list, count_list = [], []
    for h in hists:
        for k in range(n_pairs):
            d2_list.append(h.distances**2)
            count_list.append(h.counts[:, k])
    distances, table = merge_distances(d2_list, count_list, len(d2_list))
    cluster_atoms = np.stack([h.atoms_per_species for h in hists]).astype(float)
    return ClusterPairTable(hists[0].species, list(hists[0].pairs), distances, table, cluster_atoms)


def series_pair_table(structure: CrystalStructure, n_all: np.ndarray, progress: bool = False,
                      habit: str = "sphere") -> ClusterPairTable:
    """Exact pair histograms of the series clusters ``n_all`` (of ``habit``, :mod:`~.habits`; from the on-disk cache)
    merged onto one set of distances."""
    hists = [series_histogram(structure, int(n), habit)
             for n in tqdm(n_all, desc="cluster histograms" if habit == "sphere" else f"{habit} histograms",
                           disable=not progress)]
    return merge_cluster_histograms(hists)


def population_patterns(q: np.ndarray, clusters: ClusterPairTable, weights: np.ndarray, strains: np.ndarray,
                        wavelength_a: float | None, *, compton: bool = True, precision: str = "fast",
                        recoil_exponent: float = 2.0, dtype=np.float32, progress: bool = False,
                        label: str = "populations") -> tuple[np.ndarray, np.ndarray]:
    """The population DSE: coherent and Compton patterns of number-weighted sums of clusters, at every strain.

    ``weights`` (populations x clusters) are number weights (an identity matrix gives the clusters' own patterns),
    ``strains`` (fractional) rescale every distance (Q' = Q (1 + strain)); the form factors stay at the true Q (1/A).
    One pass of sin(Q'd)/(Q'd) over the merged distances serves every cluster and population. Returns crystal and
    Compton parts, each (populations x strains, Q) in ``dtype``, population-major, electron units per nanocrystal.
    """
    q = np.asarray(q, dtype=float)
    strains = np.asarray(strains, dtype=float)
    weights = np.asarray(weights, dtype=float)
    species, distances, table, cluster_atoms = clusters.species, clusters.distances, clusters.table, clusters.cluster_atoms
    n_clusters = cluster_atoms.shape[0]
    n_pairs = table.shape[1] // n_clusters
    pf, self_sp = species_factors(species, species_pairs(len(species)), q, wavelength_a)  # (Q, K), (Q, S)
    atoms_pop = weights @ cluster_atoms  # (P, S)
    self_pop = self_sp @ atoms_pop.T  # (Q, P)
    if compton:
        if wavelength_a is None:
            raise ValueError("the Compton part needs the wavelength (its recoil factor depends on it); give wavelength_a or compton=False")
        compton_pop = compton_per_species(species, q, wavelength_a, recoil_exponent) @ atoms_pop.T
    else:
        compton_pop = np.zeros_like(self_pop)
    n_pop, n_strain = weights.shape[0], len(strains)
    crystal = np.empty((n_pop, n_strain, q.size), dtype=dtype)
    rows = max(1, BLOCK_ELEMENTS // max(distances.size, 1))
    blocks = [(i, s) for i in range(n_strain) for s in range(0, q.size, rows)]
    # small clusters have no long distances: multiply each group of clusters only by the distances it has
    last_row = np.array([np.flatnonzero(table[:, c * n_pairs:(c + 1) * n_pairs].any(axis=1)).max(initial=0) + 1
                         for c in range(n_clusters)])
    groups = [g for g in np.array_split(np.argsort(last_row), min(6, n_clusters)) if g.size]
    group_rows = [int(last_row[g].max()) for g in groups]
    group_cols = [(g[:, None] * n_pairs + np.arange(n_pairs)).ravel() for g in groups]
    group_tables = [np.ascontiguousarray(table[:r, cols]) for r, cols in zip(group_rows, group_cols)]

    def work(job):
        i, start = job
        qb = q[start:start + rows]
        sinc = sin_over_x(np.outer(qb * (1.0 + strains[i]), distances), precision)
        sums = np.empty((qb.size, n_clusters * n_pairs))
        for r, cols, t in zip(group_rows, group_cols, group_tables):
            sums[:, cols] = sinc[:, :r] @ t  # (Qb, clusters*pairs), cluster-major
        per_cluster = np.einsum("qck,qk->qc", sums.reshape(qb.size, n_clusters, n_pairs), pf[start:start + rows])
        crystal[:, i, start:start + rows] = (per_cluster @ weights.T + self_pop[start:start + rows]).T

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(tqdm(pool.map(work, blocks), total=len(blocks), desc=f"DSE {label}", disable=not progress, leave=False))
    compton_out = np.repeat(compton_pop.T[:, None, :], n_strain, axis=1).astype(dtype)
    return crystal.reshape(n_pop * n_strain, q.size), compton_out.reshape(n_pop * n_strain, q.size)


def simulate_population(structure: CrystalStructure, mean_nm: float, q: np.ndarray, dispersion: float = 0.0,
                        strain: float = 0.0, wavelength_a: float = 0.56, compton: bool = True,
                        precision: str = "fast", progress: bool = False,
                        max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM) -> PatternComponents:
    """Pattern (electron units per nanocrystal) of a log-normal population of series clusters at Q (1/A)."""
    q = check_q(q)
    pop = population_weights(structure, mean_nm, dispersion, strain, max_diameter_nm)
    if wavelength_a is None and compton:
        raise ValueError("the Compton part needs the wavelength (its recoil factor depends on it); give wavelength_a or compton=False")
    clusters = series_pair_table(structure, pop.n, progress)
    crystal, inc = population_patterns(q, clusters, pop.weights[None, :], np.array([float(strain)]), wavelength_a,
                                       compton=compton, precision=precision, dtype=np.float64, progress=progress,
                                       label="population")
    return PatternComponents(q, crystal[0], inc[0])
