"""Pair-distance histograms, the input of the Debye scattering equation.

The DSE needs, for every pair of scattering species, how many atom pairs sit at each distance.
Two ways to get them:

- ``lattice_pair_histogram``: exact, for clusters cut from a lattice. Pair counts per lattice
  displacement are auto/cross-correlations of the occupancy grids of the basis sites, done by FFT,
  then merged per distinct distance. No loop over atom pairs.
- ``atoms_pair_histogram``: any ase.Atoms (icosahedra, relaxed or disordered clusters). Pair
  distances are binned with width ``bin_width_a``; each bin keeps the mean distance of its pairs,
  so the DSE error per pair is at most (Q bin_width)^2 / 6 (second order in the bin width).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from scipy import fft

from .clusters import LatticeCluster
from .form_factors import atomic_number


@dataclass(frozen=True)
class Species:
    """A scattering species: element, site occupancy and isotropic Debye-Waller B (A^2)."""

    element: str
    occupancy: float = 1.0
    b_iso: float = 0.0


@dataclass
class PairHistogram:
    """Ordered-pair counts (i != j, both orders) per distance and per unordered species pair.

    ``counts[d, k]`` is the number of ordered atom pairs of species pair ``pairs[k]`` = (s, t),
    s <= t, at distance ``distances[d]`` (A). ``atoms_per_species[s]`` gives the self terms.
    """

    species: list[Species]
    atoms_per_species: np.ndarray
    distances: np.ndarray
    counts: np.ndarray
    pairs: list[tuple[int, int]]
    exact: bool = True
    bin_width_a: float | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        return int(self.atoms_per_species.sum())

    def max_relative_pair_error(self, q_max: float) -> float:
        """Bound on |error| of each binned pair's sinc term relative to the term's weight at q_max (1/A)."""
        if self.exact or not self.bin_width_a:
            return 0.0
        return float((q_max * self.bin_width_a) ** 2 / 6.0)


def species_pairs(n_species: int) -> list[tuple[int, int]]:
    """Unordered species pairs (s, t), s <= t, in the column order of :class:`PairHistogram` counts."""
    return [(s, t) for s in range(n_species) for t in range(s, n_species)]


def merge_distances(d2_list: list[np.ndarray], count_list: list[np.ndarray], n_pairs: int,
                    tol_a2: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Merge lists of squared distances (A^2) onto one set of distances.

    ``d2_list[c]`` and ``count_list[c]`` are the squared distances and pair counts of column ``c``
    (``n_pairs`` columns). Squared distances equal within ``tol_a2`` form one group whose distance is
    the count-weighted mean. Returns (distances (A), table (groups x n_pairs) of summed counts).
    """
    d2 = np.concatenate(d2_list)
    counts = np.concatenate(count_list)
    cls = np.concatenate([np.full(len(x), k, dtype=np.int64) for k, x in enumerate(d2_list)])
    order = np.argsort(d2)
    d2, counts, cls = d2[order], counts[order], cls[order]
    new_group = np.empty(d2.size, dtype=bool)
    new_group[:1] = True
    new_group[1:] = np.diff(d2) > tol_a2
    group = np.cumsum(new_group) - 1
    n_groups = int(group[-1]) + 1 if group.size else 0
    weight = np.bincount(group, weights=counts, minlength=n_groups)
    mean_d2 = np.bincount(group, weights=counts * d2, minlength=n_groups) / np.maximum(weight, 1e-300)
    table = np.zeros((n_groups, n_pairs))
    np.add.at(table, (group, cls), counts)
    return np.sqrt(mean_d2), table


def lattice_pair_histogram(cluster: LatticeCluster) -> PairHistogram:
    """Exact pair histogram of a lattice cluster from FFT correlations of its site occupancy grids."""
    st = cluster.structure
    idx = cluster.translations - cluster.translations.min(axis=0)
    shape = idx.max(axis=0) + 1
    fft_shape = tuple(fft.next_fast_len(int(2 * n - 1), real=True) for n in shape)
    spectra = []
    for s in range(st.n_sites):
        grid = np.zeros(fft_shape)
        sel = cluster.sites == s
        grid[idx[sel, 0], idx[sel, 1], idx[sel, 2]] = 1.0
        spectra.append(fft.rfftn(grid, workers=-1))
    # lattice displacement of every FFT cell, wrapped to [-(n-1), n-1]
    disp_axes = [np.where(np.arange(m) < m // 2 + 1, np.arange(m), np.arange(m) - m) for m in fft_shape]
    pairs = species_pairs(st.n_sites)
    d2_list, count_list = [], []
    for s, t in pairs:
        corr = fft.irfftn(np.conj(spectra[s]) * spectra[t], s=fft_shape, workers=-1)
        counts = np.rint(corr)
        nz = np.nonzero(counts > 0.5)
        di, dj, dk = disp_axes[0][nz[0]], disp_axes[1][nz[1]], disp_axes[2][nz[2]]
        c = counts[nz]
        if s == t:
            # counts are symmetric under displacement -> -displacement: keep one half-space (which also
            # drops the zero displacement, the self term) and count it twice
            keep = (di > 0) | ((di == 0) & ((dj > 0) | ((dj == 0) & (dk > 0))))
            di, dj, dk, c = di[keep], dj[keep], dk[keep], c[keep]
        # correlation counts (i in s, j in t) once per half-space or species order; the DSE sums both
        c = 2.0 * c
        offset = st.fractional_positions[t] - st.fractional_positions[s]
        vec = np.stack([di, dj, dk], axis=1) + offset
        cart = vec @ st.cell
        d2_list.append(np.einsum("ij,ij->i", cart, cart))
        count_list.append(c)
    distances, table = merge_distances(d2_list, count_list, len(pairs))
    species = [Species(e, float(o), float(b)) for e, o, b in zip(st.elements, st.occupancies, st.b_iso)]
    return PairHistogram(species, cluster.site_counts(), distances, table, pairs, exact=True,
                         info={"cluster": cluster.label, "diameter_nm": cluster.diameter_nm, "fft_shape": fft_shape})


def _single_species_sums(pos: np.ndarray, row_ids: np.ndarray, weights: np.ndarray, upper: bool, bin_width_a: float,
                         n_bins: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted pair counts and distance sums per bin of one-element atoms (the fast path of
    :func:`atoms_pair_histogram`): rows of equal weight are binned together by unweighted bincounts; the pairs a
    row must skip (itself, and in the upper triangle the columns up to it) go to an overflow bin that is dropped."""
    count, dsum = np.zeros(n_bins + 1), np.zeros(n_bins + 1)
    inv = 1.0 / bin_width_a
    order = np.argsort(weights, kind="stable")  # rows of one weight together; the triangle keeps ascending rows
    row_ids, weights = row_ids[order], weights[order]
    starts = np.flatnonzero(np.r_[True, np.diff(weights) != 0, True])
    for lo, hi in zip(starts[:-1], starts[1:]):
        w = float(weights[lo])
        for start in range(lo, hi, rows):
            i = row_ids[start:min(start + rows, hi)]
            first = int(i[0]) if upper else 0  # the upper triangle needs no column below its first row
            d = _row_distances(pos, i, first)
            k = d * inv
            np.minimum(k, n_bins - 1, out=k)
            k = k.astype(np.intp)
            if upper:  # columns j <= i of the leading block (column c is atom first + c): overflow
                r = i - first
                block = int(r[-1]) + 1
                k[:, :block][np.arange(block)[None, :] <= r[:, None]] = n_bins
            else:
                k[np.arange(i.size), i] = n_bins  # the row's own atom
            flat = k.ravel()
            count += w * np.bincount(flat, minlength=n_bins + 1)
            dsum += w * np.bincount(flat, weights=d.ravel(), minlength=n_bins + 1)
    return count[:n_bins], dsum[:n_bins]


def _row_distances(pos: np.ndarray, rows: np.ndarray, first: int) -> np.ndarray:
    """Distances (A) from the atoms ``rows`` to the atoms ``first``, ``first`` + 1, ... (rows x columns), built one
    coordinate at a time (no rows x N x 3 temporary)."""
    d = np.zeros((rows.size, pos.shape[0] - first))
    for axis in range(3):
        t = np.subtract.outer(pos[rows, axis], pos[first:, axis])
        t *= t
        d += t
    np.sqrt(d, out=d)
    return d


def atoms_pair_histogram(atoms: Atoms, bin_width_a: float = 1e-3, b_iso: dict[str, float] | float = 0.0,
                         chunk_pairs: int = 4_000_000, row_weights: np.ndarray | None = None) -> PairHistogram:
    """Binned pair histogram of any ase.Atoms (non-lattice clusters).

    Species are the elements; B (A^2) per element (dict) or one value; occupancies come from the
    'occupancy' array of the Atoms if present (one value per element). Cost grows as N^2 / 2.
    ``row_weights`` (one per atom, e.g. :func:`~.cluster_symmetry.orbit_row_weights`): the histogram is
    sum_i row_weights[i] x (distances from atom i to every other atom), exact when atoms of equal weight
    stand for symmetry orbits; atoms of weight 0 are skipped, so the cost is N x (atoms of non-zero weight).
    """
    if not bin_width_a > 0:
        raise ValueError(f"bin width must be a positive distance in A, got {bin_width_a!r}")
    symbols = atoms.get_chemical_symbols()
    if len(symbols) < 1:
        raise ValueError("the Atoms object holds no atom")
    elements = sorted(set(symbols), key=atomic_number)
    sp_index = np.array([elements.index(s) for s in symbols])
    occ_arr = atoms.arrays.get("occupancy")
    species = []
    for k, e in enumerate(elements):
        occ = float(np.mean(occ_arr[sp_index == k])) if occ_arr is not None else 1.0
        b = float(b_iso.get(e, 0.0)) if isinstance(b_iso, dict) else float(b_iso)
        species.append(Species(e, occ, b))
    n_sp = len(elements)
    pairs = species_pairs(n_sp)
    cls_of = np.zeros((n_sp, n_sp), dtype=np.int64)
    for k, (s, t) in enumerate(pairs):
        cls_of[s, t] = cls_of[t, s] = k
    pos = atoms.get_positions()
    n = len(pos)
    extent_a = float(np.linalg.norm(np.ptp(pos, axis=0)))
    n_bins = int(np.ceil(extent_a / bin_width_a)) + 2
    size = n_bins * len(pairs)
    count = np.zeros(size)
    dsum = np.zeros(size)
    if row_weights is None:
        # upper triangle j > i, each pair counted for both orders
        row_ids, weights = np.arange(n - 1), np.full(max(n - 1, 0), 2.0)
    else:
        row_weights = np.asarray(row_weights, dtype=float)
        if row_weights.shape != (n,) or np.any(row_weights < 0):
            raise ValueError(f"row_weights must be {n} non-negative numbers, one per atom")
        row_ids = np.flatnonzero(row_weights)
        weights = row_weights[row_ids]
    rows = max(1, chunk_pairs // max(n, 1))
    if n_sp == 1:  # one element: no species classes, no compaction of the kept pairs
        count, dsum = _single_species_sums(pos, row_ids, weights, row_weights is None, bin_width_a, n_bins, rows)
        row_ids = row_ids[:0]
    for start in range(0, row_ids.size, rows):
        i = row_ids[start:start + rows]
        w = weights[start:start + rows]
        first = int(i[0]) + 1 if row_weights is None else 0  # the upper triangle needs no column below its first row
        cols = np.arange(first, n)
        d = _row_distances(pos, i, first)
        keep = cols[None, :] > i[:, None] if row_weights is None else cols[None, :] != i[:, None]
        dd = d[keep]
        ww = np.broadcast_to(w[:, None], keep.shape)[keep]
        k = cls_of[sp_index[i][:, None], sp_index[None, first:]][keep]
        flat = np.minimum((dd / bin_width_a).astype(np.int64), n_bins - 1) * len(pairs) + k
        count += np.bincount(flat, weights=ww, minlength=size)
        dsum += np.bincount(flat, weights=ww * dd, minlength=size)
    count, dsum = count.reshape(n_bins, len(pairs)), dsum.reshape(n_bins, len(pairs))
    # one distance per (bin, species pair): the mean of its pairs
    d_list, c_list = [], []
    for k in range(len(pairs)):
        nz = count[:, k] > 0
        d_list.append((dsum[nz, k] / count[nz, k]) ** 2)
        c_list.append(count[nz, k])  # ordered pairs: both orders
    if sum(len(x) for x in d_list) == 0:
        distances, table = np.zeros(0), np.zeros((0, len(pairs)))
    else:
        distances, table = merge_distances(d_list, c_list, len(pairs), tol_a2=0.0)
    atoms_per = np.bincount(sp_index, minlength=n_sp)
    return PairHistogram(species, atoms_per, distances, table, pairs, exact=False, bin_width_a=bin_width_a,
                         info={"cluster": atoms.info.get("label") or atoms.get_chemical_formula()})
