"""Where training patterns come from: clean patterns with their targets, augmented into batches and fixed sets.

A *source* is called once per epoch with a random generator and returns ``(augmenter, indices, targets)``: an
:class:`~.augment.Augmenter` holding this epoch's clean patterns, the indices a batch may draw, and the targets per
clean pattern (:func:`row_targets`). :class:`LibrarySource` gives the library's training simulations with fresh
lattice parameters, :class:`PopulationSource` fresh log-normal populations made from per-cluster patterns,
:class:`FixedLibrarySource` the library's simulations unchanged (validation). :func:`draw_set` draws one fixed
augmented set from a source; :func:`epoch_batches` augments one epoch's batches, which :class:`BatchProducer` runs
on a worker thread (``batch_stream.py``: in a worker process, the training's way);
:func:`reference_test_set` and :func:`blank_test_set` are the held-out tests on the reference conditions.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, NamedTuple, Union

import numpy as np

from ..physics.cluster_basis import ClusterBasis, PopulationRanges, draw_populations, population_targets
from .augment import Augmenter

#: The reference test conditions: 2 solvents x 4 nanocrystal area fractions x 4 signal-to-noise ratios.
REFERENCE_SOLVENTS = ("hexane", "toluene")
REFERENCE_FRACTIONS = (1.0, 0.65, 0.37, 0.15)
REFERENCE_SNRS = (122.0, 46.0, 24.0, 14.0)

#: One epoch's clean patterns: (augmenter holding them, indices to draw from, targets per clean pattern).
Epoch = tuple[Augmenter, np.ndarray, dict[str, np.ndarray]]
#: A source of clean patterns: called once per epoch with that epoch's random generator.
Source = Callable[[np.random.Generator], Epoch]
#: One batch: (targets per row, patterns (n, n_points), has-nanocrystals per row).
Batch = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]


def class_labels(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of the class nearest to each value."""
    return np.abs(np.asarray(values)[:, None] - np.asarray(classes)[None, :]).argmin(axis=1)


def row_targets(mean_nm: np.ndarray, volume_nm: np.ndarray, dispersion: np.ndarray, strain: np.ndarray,
                size_classes: np.ndarray, dispersion_classes: np.ndarray) -> dict[str, np.ndarray]:
    """Training targets of clean patterns: nearest size and dispersion class, the mean diameter (nm, regression head)
    and the continuous head's quantities (ln mean diameter, ln volume-weighted diameter, dispersion, strain)."""
    mean_nm = np.asarray(mean_nm, dtype=float)
    return {"size_class": class_labels(mean_nm, size_classes),
            "dispersion_class": class_labels(dispersion, dispersion_classes),
            "diameter_nm": mean_nm.astype(np.float32),
            "continuous": np.stack([np.log(mean_nm), np.log(volume_nm), dispersion, strain], axis=1).astype(np.float32)}


class LibrarySource:
    """Each epoch: the library's training patterns, each with its own lattice parameter (``with_lattice_jitter``)."""

    def __init__(self, augmenter: Augmenter, indices: np.ndarray, targets: dict[str, np.ndarray]):
        self.augmenter, self.indices, self.targets = augmenter, indices, targets

    def __call__(self, rng: np.random.Generator) -> Epoch:
        return self.augmenter.with_lattice_jitter(rng, self.indices), self.indices, self.targets


class FixedLibrarySource:
    """Every epoch the same: the library's patterns ``indices`` as simulated (the validation simulations)."""

    def __init__(self, augmenter: Augmenter, indices: np.ndarray, targets: dict[str, np.ndarray]):
        self.augmenter, self.indices, self.targets = augmenter, indices, targets

    def __call__(self, rng: np.random.Generator) -> Epoch:
        return self.augmenter, self.indices, self.targets


def instrument_fwhm_max_q(ranges: PopulationRanges) -> float:
    """The largest instrument FWHM (1/A, Gaussian or Lorentzian) the populations of ``ranges`` are drawn with."""
    return float(max(ranges.instrument_gauss_fwhm_q[1], ranges.instrument_lorentz_fwhm_q[1]))


def instrument_targets(rng: np.random.Generator, pops: dict[str, np.ndarray], share: float,
                       fwhm_max_q: float) -> np.ndarray:
    """The network's instrument condition per population (:func:`~qdots_bluesky.models.engine.instrument_condition`):
    in a share ``share`` of them (known, Gaussian, Lorentzian FWHM / ``fwhm_max_q``) of the profile they carry (zero
    widths where they carry none), zeros (unknown) in the rest."""
    known = rng.random(pops["dispersion"].size) < share
    cond = np.stack([np.ones(known.size), pops["instrument_gauss_fwhm_q"] / fwhm_max_q,
                     pops["instrument_lorentz_fwhm_q"] / fwhm_max_q], axis=1)
    return (cond * known[:, None]).astype(np.float32)


def laboratory_unknown(targets: dict[str, np.ndarray], meta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch ``targets`` with the instrument condition of laboratory rows (``meta["lab"]`` of the augmentation) set
    to unknown: their 2theta profile is not the synchrotron one the condition describes."""
    if "instrument" in targets:
        lab = np.asarray(meta["lab"], dtype=bool)
        targets["instrument"] = np.where(lab[:, None], np.float32(0.0), targets["instrument"])
    return targets


class PopulationSource:
    """Each epoch: ``size`` fresh populations with mean diameter, dispersion, strain, microstrain and a synchrotron
    instrument profile drawn within ``ranges``, made from the per-cluster patterns of ``basis`` (a matrix product,
    a Q rescaling and two convolutions per population); a share ``faceted_share`` of them from one of the ``faceted``
    bases instead (habit -> basis of the same series sizes, drawn uniformly: faceted dots). With
    ``known_instrument_share`` > 0 the targets hold the network's instrument condition (``"instrument"``, known for
    that share of the populations: :func:`instrument_targets`)."""

    def __init__(self, augmenter: Augmenter, basis: ClusterBasis, ranges: PopulationRanges, size: int,
                 size_classes: np.ndarray, dispersion_classes: np.ndarray,
                 faceted: dict[str, ClusterBasis] | None = None, faceted_share: float = 0.0,
                 known_instrument_share: float = 0.0):
        self.augmenter, self.basis, self.ranges, self.size = augmenter, basis, ranges, int(size)
        self.classes = (size_classes, dispersion_classes)
        self.faceted = dict(faceted or {})
        self.faceted_share = float(faceted_share) if self.faceted else 0.0
        self.known_instrument_share = float(known_instrument_share)

    def patterns(self, rng: np.random.Generator, pops: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Crystal and Compton patterns of the drawn populations, each from its habit's basis."""
        args = (pops["mean_diameter_nm"], pops["dispersion"], pops["strain"], pops["microstrain"],
                pops["instrument_gauss_fwhm_q"], pops["instrument_lorentz_fwhm_q"])
        if not self.faceted_share:  # no draw from rng: the spheres-only stream stays as it was
            return self.basis.patterns(*args)
        n = args[0].size
        habit = np.where(rng.random(n) < self.faceted_share, rng.integers(len(self.faceted), size=n), -1)
        crystal = np.empty((n, self.basis.q.size), np.float32)
        compton = np.empty_like(crystal)
        for k, basis in [(-1, self.basis)] + list(enumerate(self.faceted.values())):
            sel = habit == k
            if sel.any():
                crystal[sel], compton[sel] = basis.patterns(*(a[sel] for a in args))
        return crystal, compton

    def __call__(self, rng: np.random.Generator) -> Epoch:
        pops = draw_populations(rng, self.size, self.ranges)
        mean, disp, strain = pops["mean_diameter_nm"], pops["dispersion"], pops["strain"]
        crystal, compton = self.patterns(rng, pops)
        t = population_targets(self.basis.n, self.basis.unit_nm, mean, disp, strain)
        targets = row_targets(mean, t["volume_diameter_nm"], disp, strain, *self.classes)
        if self.known_instrument_share > 0:  # (no draw otherwise: the stream stays as it was)
            targets["instrument"] = instrument_targets(rng, pops, self.known_instrument_share,
                                                       instrument_fwhm_max_q(self.ranges))
        return self.augmenter.with_patterns(crystal, compton, mean, strain), np.arange(self.size), targets


class DrawnSet(NamedTuple):
    """A fixed augmented set: patterns (n, n_points), targets per row, has-nanocrystals per row."""

    x: np.ndarray
    targets: dict[str, np.ndarray]
    has_nanocrystals: np.ndarray


def draw_set(source: Source, seed: int, repeats: int = 1, indices: np.ndarray | None = None) -> DrawnSet:
    """A fixed augmented set from one draw of ``source``: every index (or ``indices``) ``repeats`` times."""
    rng = np.random.default_rng(seed)
    augmenter, all_indices, targets = source(rng)
    idx = np.repeat(all_indices if indices is None else indices, repeats)
    x, meta = augmenter.sample(idx, rng)
    return DrawnSet(x, laboratory_unknown({k: v[idx] for k, v in targets.items()}, meta), meta["fraction"] > 0)


def epoch_batches(source: Source, batch_size: int, n_batches: int, seed) -> Iterator[Batch]:
    """One epoch's ``n_batches`` augmented batches of ``batch_size`` rows, drawn with generator ``seed``: the
    source's clean patterns, then rows drawn with replacement and augmented (:data:`Batch`)."""
    rng = np.random.default_rng(seed)
    augmenter, indices, targets = source(rng)  # this epoch's patterns
    for _ in range(n_batches):
        idx = rng.choice(indices, size=batch_size)
        x, meta = augmenter.sample(idx, rng)
        yield laboratory_unknown({k: v[idx] for k, v in targets.items()}, meta), x, meta["fraction"] > 0


class BatchProducer:
    """Augments one epoch's batches on a worker thread so augmentation overlaps with the network's work; the
    epoch's clean patterns and targets come from ``source`` (fresh lattice parameters or fresh populations).
    Iterate it for ``n_batches`` batches of ``batch_size`` rows (:data:`Batch`); worker errors are raised there."""

    def __init__(self, source: Source, batch_size: int, n_batches: int, seed):
        self._q: queue.Queue = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, batch_size, n_batches, seed), daemon=True)
        self._thread.start()

    def _put(self, item: Union[Batch, BaseException, None]) -> bool:
        """Queue ``item`` unless the producer was closed; False when closed."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """Stop the worker (an epoch that will not be trained: training ended early) and wait for it."""
        self._stop.set()
        self._thread.join()

    def _run(self, source: Source, batch_size: int, n_batches: int, seed) -> None:
        try:
            for batch in epoch_batches(source, batch_size, n_batches, seed):
                if self._stop.is_set() or not self._put(batch):
                    return
        except BaseException as exc:  # surface worker errors in the training thread
            self._put(exc)
        self._put(None)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def reference_test_set(augmenter: Augmenter, indices: np.ndarray, seed: int,
                       n_points: int = 5004) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every test simulation under the 32 reference conditions (solvent x fraction x SNR), full Q range 1-15 1/A
    (``n_points`` over it: 5004 is the library step, fewer resamples to coarser steps).

    Returns the patterns, the library index of each row and the condition per row (``solvent``, ``fraction``, ``snr``).
    """
    rng = np.random.default_rng(seed)
    xs, idxs, meta = [], [], {"solvent": [], "fraction": [], "snr": []}
    for solvent in REFERENCE_SOLVENTS:
        for fraction in REFERENCE_FRACTIONS:
            for snr in REFERENCE_SNRS:
                x, _ = augmenter.fixed(indices, rng, fraction=fraction, snr=snr, solvent=solvent, q_min=1.0, q_max=15.0,
                                       n_points=n_points, lab=False, background=False)
                xs.append(x)
                idxs.append(indices)
                meta["solvent"] += [solvent] * indices.size
                meta["fraction"] += [fraction] * indices.size
                meta["snr"] += [snr] * indices.size
    return np.concatenate(xs), np.concatenate(idxs), {k: np.asarray(v) for k, v in meta.items()}


def blank_test_set(augmenter: Augmenter, seed: int, repeats: int = 64) -> tuple[np.ndarray, np.ndarray] | None:
    """Blanks (no nanocrystals), ``repeats`` per reference SNR for every loaded solvent and, when the
    augmentation makes them, for empty blanks (background only), full Q range.

    Returns the patterns and a label per row ("hexane snr 14", "empty snr 14"), or None without solvents.
    """
    if not augmenter.solvent_names:
        return None
    rng = np.random.default_rng(seed)
    idx = np.zeros(repeats, dtype=np.int64)  # the library pattern is multiplied by f = 0
    xs, labels = [], []
    kinds = list(augmenter.solvent_names) + (["empty"] if augmenter.settings.empty_blank_share > 0 else [])
    for name in kinds:
        for snr in REFERENCE_SNRS:
            xs.append(augmenter.fixed(idx, rng, fraction=0.0, snr=snr, solvent=name, q_min=1.0, q_max=15.0,
                                      n_points=5004, lab=False, background=False)[0])
            labels += [f"{name} snr {snr:g}"] * repeats
    return np.concatenate(xs), np.asarray(labels)
