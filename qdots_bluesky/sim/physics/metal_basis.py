"""SAXS + WAXS patterns of metal-cluster families: pair histograms, per-cluster bases, log-normal populations, mixtures.

One Debye scattering equation covers both ranges (e.g. Q 0.02-15 1/A; the small-angle part is the same sum).

- :func:`metal_pair_histogram`: lattice families (octahedra, truncations, spheres) get the exact FFT histogram;
  icosahedra and decahedra the binned one, computed over symmetry orbits (:mod:`.cluster_symmetry`: ~N^2 / 120
  and ~N^2 / 20 distances); both cached on disk (:func:`~.cache.cached_histogram`).
- :func:`build_metal_basis`: the patterns of every cluster of a family (clusters x Q). All clusters share one grid
  of distance bins of width h; each bin keeps its pair count n_b and first moment m_b = sum (d - c_b) about its
  centre c_b, and sum_pairs sin(Qd)/(Qd) = sum_b n_b s(Q c_b) + m_b Q s'(Q c_b) with an error per pair of at most
  (Q h)^2 / 24 of its weight (second order; :attr:`MetalBasis.max_relative_pair_error`). One sine and one cosine per
  (Q, bin) serve all clusters (:func:`moment_sinc_sums`); a strain rescales Q in them (exact for every pair term).
  Clusters are built only for histograms missing from the cache.
- :meth:`MetalBasis.patterns`: log-normal number distributions of the equal-volume diameter over the family's
  clusters; :func:`mixture_patterns`: number-weighted mixtures of families.

Units: Q in 1/A, distances in A, diameters in nm, B in A^2, intensities in electron units per cluster.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from scipy.special import ndtr
from tqdm.auto import tqdm

from .cache import cached_histogram
from .cluster_symmetry import orbit_row_weights, symmetry_orbits
from .distribution import WEIGHT_CUTOFF, check_distribution
from .dse import TWO_PI, check_q, compton_per_species, species_factors
from .metal_clusters import (LATTICE_FAMILIES, MetalCluster, build_metal_cluster, check_strain, equal_volume_diameter_nm,
                             family_parameters, fcc_lattice_parameter)
from .pair_histogram import PairHistogram, Species, atoms_pair_histogram, lattice_pair_histogram

#: Bump when the histograms of a cluster change.
METAL_HISTOGRAM_FORMAT = 1


def metal_pair_histogram(cluster: MetalCluster, bin_width_a: float = 1e-3, b_iso: float = 0.0,
                         cache: bool = True) -> PairHistogram:
    """Pair histogram of one cluster: exact for lattice families, binned (``bin_width_a``, A) over symmetry orbits
    otherwise; B (A^2) on every pair term. Cached on disk under the element, family, parameters and lattice."""
    return cluster_histogram(cluster.element, cluster.family, cluster.params, cluster.lattice_a, lambda: cluster,
                             bin_width_a, b_iso, cache)


def cluster_histogram(element: str, family: str, params: tuple, lattice_a: float,
                      build: Callable[[], MetalCluster], bin_width_a: float = 1e-3, b_iso: float = 0.0,
                      cache: bool = True) -> PairHistogram:
    """:func:`metal_pair_histogram` of the cluster that ``build()`` returns, called only when the histogram is not
    in the cache (a warm library needs no cluster built: ASE's constructions cost ~7 us per atom)."""
    def compute() -> PairHistogram:
        cluster = build()
        if cluster.family in LATTICE_FAMILIES:
            return lattice_pair_histogram(cluster.lattice)
        labels, _ = symmetry_orbits(cluster.atoms, cluster.symmetry_candidates())
        return atoms_pair_histogram(cluster.atoms, bin_width_a, row_weights=orbit_row_weights(labels))

    exact = family in LATTICE_FAMILIES
    key = (f"metal-v{METAL_HISTOGRAM_FORMAT} {element} {family} {tuple(params)} "
           f"a={lattice_a:.9f} " + ("exact" if exact else f"bin={bin_width_a:.9g}"))
    hist = cached_histogram(key, compute) if cache else compute()
    hist.species = [Species(s.element, s.occupancy, float(b_iso)) for s in hist.species]
    return hist


def sinc_and_slope(x: np.ndarray, precision: str = "fast") -> tuple[np.ndarray, np.ndarray]:
    """s(x) = sin(x)/x and x s'(x) = cos(x) - s(x) for x > 0. 'fast': argument reduced modulo 2 pi in float64, sin
    and cos in float32 (absolute error < 3e-7 per term, several times faster); 'double': float64 throughout."""
    if precision == "double":
        s = np.sin(x) / x
        return s, np.cos(x) - s
    if precision != "fast":
        raise ValueError(f"precision must be 'fast' or 'double', got {precision!r}")
    r = (x - TWO_PI * np.rint(x * (1.0 / TWO_PI))).astype(np.float32)
    s = np.sin(r).astype(np.float64) / x
    return s, np.cos(r).astype(np.float64) - s


@dataclass
class MomentTable:
    """Pair counts and first moments of several single-element clusters on one grid of distance bins."""

    centres: np.ndarray  # (bins,) A
    counts: np.ndarray  # (bins, clusters) ordered pairs
    moments: np.ndarray  # (bins, clusters) sum of (d - centre) over the bin's pairs, A
    bin_width_a: float


def moment_table(hists: list[PairHistogram], bin_width_a: float) -> MomentTable:
    """Put the histograms on one grid of bins [k h, (k + 1) h): counts and first moments (exact from each
    histogram's mean distances when ``bin_width_a`` is a multiple of their bin width)."""
    keys = [np.floor(h.distances / bin_width_a).astype(np.int64) for h in hists]
    occupied = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    centres = (occupied + 0.5) * bin_width_a
    counts = np.zeros((occupied.size, len(hists)))
    moments = np.zeros_like(counts)
    for c, (h, k) in enumerate(zip(hists, keys)):
        row = np.searchsorted(occupied, k)
        n = h.counts.sum(axis=1)
        np.add.at(counts[:, c], row, n)
        np.add.at(moments[:, c], row, n * (h.distances - centres[row]))
    return MomentTable(centres, counts, moments, bin_width_a)


def moment_sinc_sums(q: np.ndarray, table: MomentTable, precision: str = "fast", progress: bool = False,
                     block_elements: int = 1 << 21) -> np.ndarray:
    """S[c, q] = sum over the pairs of cluster c of sin(q d)/(q d), to second order in the bin width (clusters x Q).

    With x = Q c_b, sum_b n_b s(x) + m_b Q s'(x) = (1/Q) sum_b sin(x) (n_b / c_b - m_b / c_b^2) + sum_b cos(x) m_b / c_b:
    one sine and one cosine per (Q, bin) (float32 after reducing x modulo 2 pi in float64 when ``precision`` is
    'fast', as :func:`sinc_and_slope`) and float64 matrix products. The bins go in chunks of ~``block_elements`` / Q
    (every Q at once, so each cluster's weights are read once); clusters go in groups of similar size, each group
    multiplied only up to its own longest distance.
    """
    if precision not in ("fast", "double"):
        raise ValueError(f"precision must be 'fast' or 'double', got {precision!r}")
    q = np.asarray(q, dtype=float)
    n_clusters = table.counts.shape[1]
    if table.centres.size == 0 or n_clusters == 0:
        return np.zeros((n_clusters, q.size))
    c = table.centres
    last = np.array([np.flatnonzero(table.counts[:, k]).max(initial=-1) + 1 for k in range(n_clusters)])
    order = np.argsort(last, kind="stable")
    groups = []  # (first column, last column, bins, weights of sin / Q, weights of cos) in the sorted order
    for g in np.array_split(np.arange(n_clusters), int(np.clip(n_clusters // 24, 1, 8))):
        r = int(last[order[g]].max())
        n, m, cr = table.counts[:r, order[g]], table.moments[:r, order[g]], c[:r, None]
        groups.append((int(g[0]), int(g[-1]) + 1, r, np.ascontiguousarray(n / cr - m / cr**2),
                       np.ascontiguousarray(m / cr)))
    bins = int(last.max())
    width = min(bins, max(64, block_elements // q.size))
    x, t = np.empty((q.size, width)), np.empty((q.size, width))
    s32, c32 = np.empty((q.size, width), np.float32), np.empty((q.size, width), np.float32)
    sin, cos = np.empty((q.size, width)), np.empty((q.size, width))
    out = np.zeros((q.size, n_clusters))  # Q x clusters in the sorted order
    for lo in tqdm(range(0, bins, width), desc="basis DSE", disable=not progress, leave=False):
        w = min(width, bins - lo)
        np.multiply(q[:, None], c[None, lo:lo + w], out=x[:, :w])
        if precision == "double":
            np.sin(x[:, :w], out=sin[:, :w])
            np.cos(x[:, :w], out=cos[:, :w])
        else:
            np.multiply(x[:, :w], 1.0 / TWO_PI, out=t[:, :w])
            np.rint(t[:, :w], out=t[:, :w])
            t[:, :w] *= TWO_PI
            np.subtract(x[:, :w], t[:, :w], out=t[:, :w])
            s32[:, :w] = t[:, :w]
            np.cos(s32[:, :w], out=c32[:, :w])
            np.sin(s32[:, :w], out=s32[:, :w])
            sin[:, :w], cos[:, :w] = s32[:, :w], c32[:, :w]
        sin[:, :w] /= q[:, None]
        for first, stop, r, a, b in groups:
            e = min(r - lo, w)
            if e > 0:
                out[:, first:stop] += sin[:, :e] @ a[lo:lo + e] + cos[:, :e] @ b[lo:lo + e]
    result = np.empty((n_clusters, q.size))
    result[order] = out.T
    return result


@dataclass
class MetalBasis:
    """Patterns of every cluster of one family on one Q grid (rows: clusters, in the family's order)."""

    element: str
    family: str
    q: np.ndarray  # (Q,) 1/A
    params: list[tuple]
    n_atoms: np.ndarray  # (clusters,)
    diameter_nm: np.ndarray  # (clusters,) equal-volume diameter at the basis strain
    extent_nm: np.ndarray  # (clusters,) largest interatomic distance at the basis strain (from the histogram)
    crystal: np.ndarray  # (clusters, Q) coherent part, electron units per cluster
    compton: np.ndarray  # (clusters, Q) incoherent part
    strain: float
    b_iso: float
    wavelength_a: float | None
    bin_width_a: float

    def max_relative_pair_error(self, q_max: float | None = None) -> float:
        """Bound on the error of each pair's sinc term relative to its weight at q_max (default the grid's end)."""
        q_max = float(self.q[-1] if q_max is None else q_max)
        return float((q_max * (1.0 + self.strain) * self.bin_width_a) ** 2 / 24.0)

    def weights(self, mean_nm: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
        """Number weights (populations x clusters) of log-normal populations: :func:`size_weight_matrix`."""
        return size_weight_matrix(self.diameter_nm, mean_nm, dispersion)

    def patterns(self, mean_nm: np.ndarray, dispersion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coherent and Compton patterns (populations x Q) of log-normal populations: weights @ basis."""
        w = self.weights(mean_nm, dispersion)
        return w @ self.crystal, w @ self.compton


def size_weight_matrix(diameter_nm: np.ndarray, mean_nm: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """Number weights (populations x clusters) of log-normal distributions of diameter over clusters of any sizes.

    Like :func:`~.cluster_basis.lognormal_weight_matrix`, each distinct diameter takes the probability of the
    interval between the midpoints to its neighbours (the end intervals mirrored), split equally among clusters of
    that diameter; weights below ``WEIGHT_CUTOFF`` are dropped and rows renormalised. Dispersion 0 puts the
    population on the clusters of the nearest diameter. Mean diameters in nm, dispersions relative (0 to 0.5).
    """
    mean_nm = np.atleast_1d(np.asarray(mean_nm, dtype=float))
    dispersion = np.atleast_1d(np.asarray(dispersion, dtype=float))
    if mean_nm.shape != dispersion.shape:
        raise ValueError(f"mean_nm {mean_nm.shape} and dispersion {dispersion.shape}; accepted: one value each per population")
    for m, s in zip(mean_nm, dispersion):
        check_distribution(float(m), float(s))
    d = np.asarray(diameter_nm, dtype=float)
    lo_ok, hi_ok = d.min() * 0.5, d.max() * 1.5
    bad = (mean_nm < lo_ok) | (mean_nm > hi_ok)
    if np.any(bad):
        raise ValueError(f"mean diameter {mean_nm[bad][0]:.3g} nm is far outside the clusters of the basis "
                         f"({d.min():.2f} to {d.max():.2f} nm); accepted: {lo_ok:.2f} to {hi_ok:.2f} nm")
    unique, inverse, multiplicity = np.unique(np.round(d, 9), return_inverse=True, return_counts=True)
    if unique.size == 1:
        edges = np.array([unique[0] * 0.5, unique[0] * 1.5])
    else:
        mid = 0.5 * (unique[1:] + unique[:-1])
        edges = np.concatenate([[max(unique[0] - (mid[0] - unique[0]), 1e-6)], mid, [2 * unique[-1] - mid[-1]]])
    w2 = np.log1p(dispersion**2)
    m = np.log(mean_nm) - w2 / 2.0
    s = np.sqrt(np.maximum(w2, 1e-300))
    cdf = ndtr((np.log(edges)[None, :] - m[:, None]) / s[:, None])
    per_size = np.diff(cdf, axis=1)
    zero = dispersion == 0
    if np.any(zero):
        per_size[zero] = 0.0
        per_size[zero, np.argmin(np.abs(unique[None, :] - mean_nm[zero, None]), axis=1)] = 1.0
    w = per_size[:, inverse] / multiplicity[inverse]
    w[w < WEIGHT_CUTOFF] = 0.0
    total = w.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        i = int(np.flatnonzero(total[:, 0] <= 0)[0])
        raise ValueError(f"no cluster carries weight for mean {mean_nm[i]:.3g} nm, dispersion {dispersion[i]:.3g}")
    return w / total


def build_metal_basis(element: str, family: str, q: np.ndarray, d_min_nm: float, d_max_nm: float, *,
                      strain: float = 0.0, b_iso: float = 0.0, wavelength_a: float | None = 0.56, compton: bool = True,
                      hist_bin_a: float = 1e-3, bin_width_a: float = 2e-3, precision: str = "fast", cache: bool = True,
                      progress: bool = False,
                      **family_options) -> MetalBasis:
    """Per-cluster SAXS + WAXS patterns of the family's clusters with bulk equal-volume diameters in
    [d_min_nm, d_max_nm] (:func:`~.metal_clusters.family_series`), at Q (1/A), lattice a_bulk (1 + strain),
    Debye-Waller B (A^2) and wavelength (A; None: no anomalous dispersion and no Compton part). ``precision``:
    see :func:`sinc_and_slope`; ``family_options`` go to :func:`~.metal_clusters.family_parameters`."""
    q = check_q(q)
    strain = check_strain(strain)
    if wavelength_a is None and compton:
        raise ValueError("the Compton part needs the wavelength (its recoil factor depends on it); give wavelength_a or compton=False")
    ratio = bin_width_a / hist_bin_a
    if not (hist_bin_a > 0 and bin_width_a > 0 and abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1):
        raise ValueError(f"bin widths {hist_bin_a!r}, {bin_width_a!r} A; accepted: positive, bin_width_a a whole multiple of hist_bin_a")
    params = family_parameters(element, family, d_min_nm, d_max_nm, **family_options)
    if not params:
        raise ValueError(f"no {family} of {element} has an equal-volume diameter within {d_min_nm} to {d_max_nm} nm; "
                         "accepted: a wider range")
    a = fcc_lattice_parameter(element)
    hists = [cluster_histogram(element, family, p, a, partial(build_metal_cluster, element, family, p), hist_bin_a,
                               b_iso, cache)
             for p in tqdm(params, desc=f"{family} histograms", disable=not progress, leave=False)]
    table = moment_table(hists, bin_width_a)
    sums = moment_sinc_sums(q * (1.0 + strain), table, precision, progress)
    species = [Species(element, 1.0, float(b_iso))]
    pf, self_sp = species_factors(species, [(0, 0)], q, wavelength_a)
    n_atoms = np.array([h.n_atoms for h in hists])
    crystal = n_atoms[:, None] * self_sp[:, 0][None, :] + sums * pf[:, 0][None, :]
    inc = (n_atoms[:, None] * compton_per_species(species, q, wavelength_a)[:, 0][None, :] if compton
           else np.zeros_like(crystal))
    scale = 1.0 + strain
    extent_nm = np.array([h.distances.max(initial=0.0) for h in hists]) / 10.0  # binned: the last bin's mean
    return MetalBasis(element, family, q, list(params), n_atoms, equal_volume_diameter_nm(n_atoms, a) * scale,
                      extent_nm * scale, crystal, inc, strain, float(b_iso), wavelength_a, float(bin_width_a))


def mixture_patterns(bases: list[MetalBasis], fractions: np.ndarray, mean_nm: np.ndarray,
                     dispersion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coherent and Compton patterns (populations x Q) of mixtures of families: sum_f fractions[p, f] x family f's
    log-normal population (number fractions per population, each row summing to 1; same Q grid in every basis)."""
    fractions = np.atleast_2d(np.asarray(fractions, dtype=float))
    if fractions.shape[1] != len(bases) or np.any(fractions < 0) or not np.allclose(fractions.sum(axis=1), 1.0):
        raise ValueError(f"fractions {fractions.shape}; accepted: one non-negative number fraction per family "
                         f"({len(bases)}) in each row, rows summing to 1")
    if any(b.q.shape != bases[0].q.shape or not np.allclose(b.q, bases[0].q) for b in bases):
        raise ValueError("the bases of a mixture must share one Q grid")
    crystal = np.zeros((fractions.shape[0], bases[0].q.size))
    compton = np.zeros_like(crystal)
    for f, basis in enumerate(bases):
        c, i = basis.patterns(mean_nm, dispersion)
        crystal += fractions[:, f:f + 1] * c
        compton += fractions[:, f:f + 1] * i
    return crystal, compton


def saxs_waxs_q(q_min: float = 0.02, q_max: float = 15.0, n_points: int = 3000, spacing: str = "log") -> np.ndarray:
    """A Q grid (1/A) over SAXS and WAXS: log-spaced (even sampling of the Guinier region) or linear."""
    if not (0 < q_min < q_max) or n_points < 2 or spacing not in ("log", "linear"):
        raise ValueError(f"Q grid {q_min!r}-{q_max!r} 1/A, {n_points!r} points, {spacing!r}; accepted: "
                         "0 < q_min < q_max, at least 2 points, spacing 'log' or 'linear'")
    return np.geomspace(q_min, q_max, n_points) if spacing == "log" else np.linspace(q_min, q_max, n_points)
