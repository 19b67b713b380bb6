"""Powder patterns of quantum-dot populations: log-normal size distributions over series clusters."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .cache import series_histogram
from .clusters import check_cluster_size, equal_volume_diameter_nm
from .distribution import DEFAULT_MAX_DIAMETER_NM, check_distribution, clusters_needed, lognormal_number_weights
from .dse import PatternComponents, check_q, debye_pattern
from .materials import CrystalStructure
from .pair_histogram import PairHistogram, _merge_distances

#: Accepted isotropic strain (fractional change of the lattice parameter).
MAX_ABS_STRAIN = 0.10


def check_strain(strain: float) -> None:
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


def combine_histograms(hists: list[PairHistogram], weights: np.ndarray) -> PairHistogram:
    """Number-weighted sum of cluster histograms over their common set of distances."""
    k = len(hists[0].pairs)
    d2, counts = [], []
    for h, w in zip(hists, weights):
        d2.extend([h.distances**2] * k)
        counts.extend([h.counts[:, j] * w for j in range(k)])
    # interleave so class index = position modulo k
    distances, table = _merge_distances(d2, counts, len(d2))
    table = table.reshape(len(distances), len(hists), k).sum(axis=1)
    atoms = sum(w * h.atoms_per_species for h, w in zip(hists, weights))
    return PairHistogram(hists[0].species, atoms, distances, table, hists[0].pairs, exact=all(h.exact for h in hists))


def simulate_population(structure: CrystalStructure, mean_nm: float, q: np.ndarray, dispersion: float = 0.0,
                        strain: float = 0.0, wavelength_a: float = 0.56, compton: bool = True,
                        precision: str = "fast", progress: bool = False,
                        max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM) -> PatternComponents:
    """Pattern (electron units per nanocrystal) of a log-normal population of series clusters at Q (1/A)."""
    q = check_q(q)
    pop = population_weights(structure, mean_nm, dispersion, strain, max_diameter_nm)
    hists = [series_histogram(structure, int(n)) for n in tqdm(pop.n, desc="clusters", disable=not progress, leave=False)]
    combined = combine_histograms(hists, pop.weights) if len(hists) > 1 else hists[0]
    return debye_pattern(combined, q, wavelength_a, strain, compton, precision)
