"""Training data for shape + size models of metal nanoclusters: fresh populations of cluster families every epoch.

:class:`MetalSource` follows the source protocol of :mod:`.sources` (called once per epoch with a
``np.random.Generator``, returns ``(augmenter, indices, targets)``; :func:`~.sources.draw_set` and
:class:`~.sources.BatchProducer` take it as they are). Each epoch it draws ``size`` populations
(:func:`draw_metal_populations`): a single family, or with probability ``mixture_share`` two families with their
own log-normal size distributions, mixed by number fractions; each from the per-cluster patterns of
:func:`~qdots_bluesky.sim.physics.metal_basis.build_metal_basis` (a weight matrix times the basis), optionally
under a uniform strain (a shift of ln Q on a log-spaced grid). The :class:`~.metal_augment.MetalAugmenter` turns
rows into two-channel network inputs.

Targets per population (:func:`population_targets`), from the cluster weights actually used (so they match the
pattern even where a family has few sizes, e.g. 19 icosahedra over 1-10 nm):

- ``family_probabilities`` (rows x families, float32): one-hot for a single family, the number fractions of a
  mixture (each row sums to 1); columns in the order of the source's ``families``;
- ``diameter_nm``: number-weighted mean equal-volume diameter (nm); ``volume_diameter_nm``: volume-weighted mean
  sum w D^4 / sum w D^3 (nm); ``dispersion``: the number distribution's standard deviation over its mean (the
  drawn log-normal width is 0-30 %; a mixture of two sizes can be broader); ``strain``: the uniform strain;
- ``continuous`` (rows x 4): ln diameter, ln volume diameter, dispersion, strain, as :func:`~.sources.row_targets`.

Held-out data: :func:`split_basis` deals every k-th cluster of each family (by size, offset from a seed) to a test
basis; a ``part="test"`` source draws only those clusters and a ``part="train"`` source never does, so no test
pattern is a near-duplicate of a trained cluster.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..physics.form_factors import complex_form_factor
from ..physics.metal_basis import MetalBasis
from .metal_augment import MetalAugmenter

PARTS = ("train", "test", "all")


@dataclass(frozen=True)
class MetalPopulationRanges:
    """What populations are drawn. Mean diameters (number-weighted, nm) log-uniform within ``mean_diameter_nm``
    and the family's clusters; log-normal widths uniform in ``dispersion``; the second family of a mixture has its
    mean within a factor ``mixture_size_ratio`` of the first and its number fraction in ``mixture_fraction``;
    uniform strain (fractional change of every distance) uniform in ``strain``."""

    mean_diameter_nm: tuple[float, float] = (1.0, 10.0)
    dispersion: tuple[float, float] = (0.0, 0.30)
    mixture_share: float = 0.3
    mixture_fraction: tuple[float, float] = (0.1, 0.9)
    mixture_size_ratio: float = 1.5
    strain: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        checks = [("mean_diameter_nm", self.mean_diameter_nm, 0.3, 12.0), ("dispersion", self.dispersion, 0.0, 0.5),
                  ("mixture_fraction", self.mixture_fraction, 0.0, 1.0), ("strain", self.strain, -0.05, 0.05)]
        for name, value, lo, hi in checks:
            if not (len(value) == 2 and lo <= value[0] <= value[1] <= hi):
                raise ValueError(f"{name} {value!r}; accepted: (low, high) with {lo} <= low <= high <= {hi}")
        if not 0.0 <= self.mixture_share <= 1.0:
            raise ValueError(f"mixture_share {self.mixture_share!r}; accepted: a probability from 0 to 1")
        if not self.mixture_size_ratio >= 1.0:
            raise ValueError(f"mixture_size_ratio {self.mixture_size_ratio!r}; accepted: a factor >= 1")


def split_basis(basis: MetalBasis, part: str, test_every: int = 5, seed: int = 0) -> MetalBasis:
    """The clusters of ``basis`` for ``part``: 'test' every ``test_every``-th cluster by diameter (offset drawn from
    ``seed``), 'train' the others, 'all' every cluster. Each part keeps sizes over the whole range."""
    if part not in PARTS:
        raise ValueError(f"part {part!r}; accepted: {', '.join(PARTS)}")
    if not (isinstance(test_every, int) and test_every >= 2):
        raise ValueError(f"test_every {test_every!r}; accepted: an integer >= 2 (one cluster in test_every is held out)")
    if part == "all":
        return basis
    rank = np.empty(len(basis.params), dtype=int)
    rank[np.argsort(basis.diameter_nm, kind="stable")] = np.arange(rank.size)
    test = (rank + int(np.random.default_rng(seed).integers(test_every))) % test_every == 0
    keep = np.flatnonzero(test if part == "test" else ~test)
    if keep.size == 0:
        raise ValueError(f"the {basis.family} basis has {rank.size} clusters: none left for part {part!r}; "
                         "accepted: a basis with more clusters or a smaller test_every")
    return replace(basis, params=[basis.params[i] for i in keep], n_atoms=basis.n_atoms[keep],
                   diameter_nm=basis.diameter_nm[keep], extent_nm=basis.extent_nm[keep],
                   crystal=basis.crystal[keep], compton=basis.compton[keep])


#: A family whose held-out clusters lie further apart than this (median of consecutive diameter ratios - 1) cannot
#: form a polydisperse population of them: see :func:`population_bases`.
COARSE_SPACING = 0.2
#: Polydisperse rows at least this wide (relative std) draw such a family from its whole series; narrower ones stay on
#: its held-out clusters (a 5 % log-normal over clusters 20-140 % apart is one cluster: from the series it would be a
#: single trained one).
SERIES_DISPERSION = COARSE_SPACING / 2


def split_dispersion_range(low: float, high: float, size: int) -> list[tuple[tuple[float, float], int, bool]]:
    """``size`` rows of log-normal widths uniform in ``low``-``high`` as (range, rows, from the whole series) pieces
    below and above :data:`SERIES_DISPERSION` (rows in proportion to the pieces' widths, so the draw stays uniform)."""
    t = min(max(SERIES_DISPERSION, low), high)
    if high <= low:
        return [((low, high), size, low >= SERIES_DISPERSION)]
    n_low = int(round(size * (t - low) / (high - low)))
    return [(r, n, series) for r, n, series in (((low, t), n_low, False), ((t, high), size - n_low, True)) if n > 0]


def population_bases(bases: list[MetalBasis], part: str, test_every: int = 5, polydisperse: bool = False,
                     split_seed: int = 0) -> list[MetalBasis]:
    """The clusters each family's populations are drawn from: :func:`split_basis` of ``part``, except for
    polydisperse populations of held-out clusters (``part="test"``, callers pass ``polydisperse`` for rows at least
    :data:`SERIES_DISPERSION` wide) of a family whose held-out clusters are spaced by more than
    :data:`COARSE_SPACING`: its whole series, whose clusters were trained on (~3/4 of such a population's number
    weight, Au 1-10 nm). Au 1-10 nm: 4 held-out icosahedra and cuboctahedra
    (1.7, 4.1, 6.4, 8.8 nm) and 7 octahedra (1.4-9.8 nm, 17-99 % apart), where a 10-30 % log-normal of held-out
    clusters would be a histogram of one to three of them, its number-weighted mean unlike a population's (the SAXS
    sees the largest); decahedra, truncated octahedra and spheres (4, 1.5 and 9 % apart) stay held out."""
    out = []
    for b in bases:
        split = split_basis(b, part, test_every, split_seed)
        d = np.sort(split.diameter_nm)
        coarse = d.size < 2 or float(np.median(d[1:] / d[:-1])) - 1.0 > COARSE_SPACING
        out.append(b if polydisperse and part == "test" and coarse else split)
    return out


def draw_metal_populations(rng: np.random.Generator, n: int, bases: list[MetalBasis],
                           ranges: MetalPopulationRanges) -> dict[str, np.ndarray]:
    """``n`` populations: ``family`` (n, 2) family indices (the second = the first for a single family),
    ``fraction`` (n,) number fraction of the first, ``mean_nm`` and ``dispersion`` (n, 2) per component, ``strain``."""
    lims = np.array([[max(ranges.mean_diameter_nm[0], b.diameter_nm.min()), min(ranges.mean_diameter_nm[1],
                      b.diameter_nm.max())] for b in bases])
    usable = np.flatnonzero(lims[:, 0] <= lims[:, 1])
    if usable.size == 0:
        raise ValueError(f"no family has clusters within mean_diameter_nm {ranges.mean_diameter_nm}; accepted: a "
                         "range that meets the bases' diameters")
    first = rng.choice(usable, n)
    mixed = rng.random(n) < (ranges.mixture_share if usable.size > 1 else 0.0)
    other = usable[(np.searchsorted(usable, first) + rng.integers(1, max(usable.size, 2), n)) % usable.size]
    family = np.stack([first, np.where(mixed, other, first)], axis=1)
    lo, hi = np.log(lims[family[:, 0], 0]), np.log(lims[family[:, 0], 1])
    mean0 = np.exp(rng.uniform(lo, hi))
    ratio = np.exp(rng.uniform(-1, 1, n) * np.log(ranges.mixture_size_ratio))
    mean1 = np.clip(mean0 * ratio, lims[family[:, 1], 0], lims[family[:, 1], 1])
    return {"family": family, "fraction": np.where(mixed, rng.uniform(*ranges.mixture_fraction, n), 1.0),
            "mean_nm": np.stack([mean0, mean1], axis=1), "dispersion": rng.uniform(*ranges.dispersion, (n, 2)),
            "strain": rng.uniform(*ranges.strain, n)}


def population_targets(weights: list[np.ndarray], diameters: list[np.ndarray], fractions: np.ndarray,
                       strain: np.ndarray) -> dict[str, np.ndarray]:
    """Size targets of populations made of components c (number weights ``weights[c]`` (rows x clusters) over
    ``diameters[c]`` (nm), number fractions ``fractions[:, c]``), every diameter times 1 + strain."""
    moments = np.zeros((len(strain), 5))
    for c, (w, d) in enumerate(zip(weights, diameters)):
        moments += fractions[:, c:c + 1] * (w @ (np.asarray(d)[:, None] ** np.arange(5)[None, :]))
    scale = 1.0 + np.asarray(strain, dtype=float)
    mean = moments[:, 1] / moments[:, 0]
    std = np.sqrt(np.maximum(moments[:, 2] / moments[:, 0] - mean**2, 0.0))
    volume = moments[:, 4] / moments[:, 3]
    return {"diameter_nm": mean * scale, "volume_diameter_nm": volume * scale, "dispersion": std / mean,
            "strain": np.asarray(strain, dtype=float)}


def strained(q: np.ndarray, pattern: np.ndarray, strain: np.ndarray, form_factor_sq: np.ndarray) -> np.ndarray:
    """Coherent patterns (rows x Q, log-spaced ``q``) of the same clusters with every distance times 1 + strain:
    f^2(Q) / f^2(Q') I(Q') at Q' = Q (1 + strain), read by cubic convolution (Keys, a = -1/2) on ln Q, where the
    rescaling is a shift by ln(1 + strain) / d ln Q points; the end values are held beyond the grid."""
    shift = np.log1p(np.asarray(strain, dtype=float)) / np.mean(np.diff(np.log(q)))
    pos = np.arange(q.size)[None, :] + shift[:, None]
    base = np.floor(pos).astype(int)
    t = pos - base
    out = np.zeros_like(pattern)
    f2 = np.zeros_like(pattern)
    rows = np.arange(pattern.shape[0])[:, None]
    for k in (-1, 0, 1, 2):
        x = np.abs(t - k)
        w = np.where(x <= 1, 1.5 * x**3 - 2.5 * x**2 + 1, np.where(x < 2, -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2, 0.0))
        idx = np.clip(base + k, 0, q.size - 1)
        out += w * pattern[rows, idx]
        f2 += w * form_factor_sq[idx]
    return out * form_factor_sq[None, :] / f2


class MetalSource:
    """Each epoch: ``size`` fresh populations of the ``bases``' families (:func:`draw_metal_populations`) as clean
    patterns (crystal + Compton, electron units per cluster) in a :class:`~.metal_augment.MetalAugmenter`, with
    their targets (module docstring). ``part``: the clusters drawn (:func:`split_basis`); every basis must share
    one Q grid, log-spaced when ``ranges.strain`` is not (0, 0)."""

    def __init__(self, bases: list[MetalBasis], augmenter: MetalAugmenter, size: int,
                 ranges: MetalPopulationRanges | None = None, part: str = "train", test_every: int = 5,
                 split_seed: int = 0):
        if not bases or any(b.q.shape != bases[0].q.shape or not np.allclose(b.q, bases[0].q) for b in bases):
            raise ValueError("bases: accepted: one or more MetalBasis on one Q grid")
        if not np.allclose(augmenter.q, bases[0].q):
            raise ValueError("the augmenter's Q grid differs from the bases'; accepted: the same grid")
        if not (isinstance(size, (int, np.integer)) and size >= 1):
            raise ValueError(f"size {size!r}; accepted: a number of populations >= 1 per epoch")
        self.ranges = ranges or MetalPopulationRanges()
        self.families = [b.family for b in bases]
        if len(set(self.families)) != len(self.families):
            raise ValueError(f"families {self.families}; accepted: one basis per family")
        q = bases[0].q
        if self.ranges.strain != (0.0, 0.0) and not np.allclose(np.diff(np.log(q)), np.log(q[1] / q[0]), rtol=1e-6):
            raise ValueError("strain needs a log-spaced Q grid (saxs_waxs_q(..., spacing='log')); accepted: such a "
                             "grid or strain (0, 0)")
        self.bases = [split_basis(b, part, test_every, split_seed) for b in bases]
        self.augmenter, self.size, self.part = augmenter, int(size), part
        b0 = bases[0]
        self.form_factor_sq = np.abs(complex_form_factor(b0.element, q, b0.wavelength_a)) ** 2

    def populations(self, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One draw: clean patterns (size x Q), targets, and the drawn populations."""
        pops = draw_metal_populations(rng, self.size, self.bases, self.ranges)
        n_fam, q_size = len(self.bases), self.bases[0].q.size
        crystal, compton = np.zeros((self.size, q_size)), np.zeros((self.size, q_size))
        probabilities = np.zeros((self.size, n_fam))
        weights, diameters, fractions = [], [], []
        for c, frac in enumerate((pops["fraction"], 1.0 - pops["fraction"])):
            for f, basis in enumerate(self.bases):
                rows = np.flatnonzero((pops["family"][:, c] == f) & (frac > 0))
                w = np.zeros((self.size, len(basis.params)))
                if rows.size:
                    w[rows] = basis.weights(pops["mean_nm"][rows, c], pops["dispersion"][rows, c])
                    crystal[rows] += frac[rows, None] * (w[rows] @ basis.crystal)
                    compton[rows] += frac[rows, None] * (w[rows] @ basis.compton)
                    probabilities[rows, f] += frac[rows]
                weights.append(w)
                diameters.append(basis.diameter_nm)
                fractions.append(frac)
        if np.any(pops["strain"] != 0):
            crystal = strained(self.bases[0].q, crystal, pops["strain"], self.form_factor_sq)
        t = population_targets(weights, diameters, np.stack(fractions, axis=1), pops["strain"])
        targets = {"family_probabilities": probabilities.astype(np.float32)}
        targets |= {k: v.astype(np.float32) for k, v in t.items()}
        targets["continuous"] = np.stack([np.log(t["diameter_nm"]), np.log(t["volume_diameter_nm"]), t["dispersion"],
                                          t["strain"]], axis=1).astype(np.float32)
        return crystal + compton, targets, pops

    def __call__(self, rng: np.random.Generator):
        patterns, targets, _ = self.populations(rng)
        return self.augmenter.with_patterns(patterns), np.arange(self.size), targets
