"""Metrics of a metal-cluster shape + size network (issue 18) over arrays, and held-out evaluation sets per condition.

Pure functions of network outputs and targets (no predictor, no torch):

- shape: accuracy over the families and over the three structure groups (:data:`STRUCTURE_GROUPS`: icosahedral =
  icosahedron, decahedral = decahedron, fcc = octahedron, truncated octahedron, cuboctahedron, sphere: the family
  probabilities summed per group), confusion matrices per 1 nm size bin, top-1 expected calibration error (15 bins);
- size: mean absolute errors of the number-weighted mean diameter D_N and of the volume-weighted D_V (nm) per family,
  accuracy of the 0.5 nm size class of D_N (classes :data:`SIZE_CLASSES_NM` 1.0..10.0 nm; predicted class = the
  class with most Gaussian mass, as :func:`~qdots_bluesky.models.continuous.class_probabilities`), coverage of the
  68 % and 95 % intervals;
- :func:`draw_evaluation_set`: a held-out set (``part="test"`` clusters: never trained; except polydisperse
  populations, at least :data:`~.metal_sources.SERIES_DISPERSION` wide, of the icosahedra, cuboctahedra and
  octahedra, of which only 4-7 are held out: from their whole series, ~3/4 of their number weight on trained
  clusters) under one
  :class:`EvaluationCondition` (mask mode, dispersion 0 / 0.2 / drawn, counting noise, Q edges), so robustness curves
  over Q range, noise and polydispersity come from a list of conditions (:func:`evaluation_conditions`);
- :func:`estimate_arrays` and :func:`estimate_metrics`: the same figures from the answers users get
  (``TaskEstimate`` answers of the ``ClusterPredictor``: calibrated probabilities, sizes NaN where not sized, flags).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from ...models.calibration import expected_calibration_error, softmax
from ...models.cluster_engine import cluster_continuous_estimates
from ...models.continuous import calibrated_std, class_probabilities, widened_std
from ..physics.metal_basis import MetalBasis
from .metal_augment import MASK_MODES, MetalAugmenter, MetalAugmentSettings
from .metal_sources import SERIES_DISPERSION, MetalPopulationRanges, MetalSource, population_bases
from .sources import DrawnSet, draw_set

#: Structure groups and the families in each (a family not named here counts as fcc).
STRUCTURE_GROUPS = ("icosahedral", "decahedral", "fcc")
GROUP_OF_FAMILY = {"icosahedron": 0, "decahedron": 1}
#: 0.5 nm size classes of the number-weighted mean diameter (nm).
SIZE_CLASSES_NM = np.round(np.arange(1.0, 10.0001, 0.5), 2)
#: Two-sided Gaussian levels of the reported intervals.
INTERVAL_LEVELS = {"68": 1.0, "95": 1.959963984540054}


def structure_group_matrix(families: Sequence[str]) -> np.ndarray:
    """(families x 3) 0/1 matrix summing family probabilities into :data:`STRUCTURE_GROUPS`."""
    g = np.zeros((len(families), len(STRUCTURE_GROUPS)))
    for i, f in enumerate(families):
        g[i, GROUP_OF_FAMILY.get(f, 2)] = 1.0
    return g


def shape_metrics(probabilities: np.ndarray, true_probabilities: np.ndarray, families: Sequence[str],
                  n_bins: int = 15) -> dict[str, float]:
    """Accuracy and top-1 ECE over the families (``acc6``, ``ece6``) and the structure groups (``acc3``, ``ece3``):
    ``probabilities`` (rows x families) predicted, ``true_probabilities`` the targets (label = the largest)."""
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(true_probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape != t.shape or p.shape[1] != len(families) or p.shape[0] == 0:
        raise ValueError(f"probabilities {p.shape}, targets {t.shape}; accepted: equal shapes (rows >= 1, "
                         f"{len(families)} families)")
    g = structure_group_matrix(families)
    out = {}
    for name, pp, tt in (("6", p, t), ("3", p @ g, t @ g)):
        labels = tt.argmax(axis=1)
        out["acc" + name] = float(np.mean(pp.argmax(axis=1) == labels))
        out["ece" + name] = expected_calibration_error(pp, labels, n_bins)
    return out


def size_class_labels(diameter_nm: np.ndarray, classes_nm: np.ndarray = SIZE_CLASSES_NM) -> np.ndarray:
    """Class of each diameter (nm): the interval between the midpoints of neighbouring classes it falls in (end
    classes take the tails), the same intervals as :func:`~qdots_bluesky.models.continuous.class_probabilities`."""
    classes_nm = np.asarray(classes_nm, dtype=np.float64)
    return np.searchsorted(0.5 * (classes_nm[1:] + classes_nm[:-1]), np.asarray(diameter_nm, dtype=np.float64))


def size_class_accuracy(log_mean: np.ndarray, log_std: np.ndarray, diameter_nm: np.ndarray,
                        classes_nm: np.ndarray = SIZE_CLASSES_NM) -> float:
    """Share of rows whose most probable class (Gaussian estimate of ln D: ``log_mean`` +- ``log_std``) is the class
    of the true diameter (nm)."""
    pred = class_probabilities(log_mean, log_std, classes_nm).argmax(axis=1)
    return float(np.mean(pred == size_class_labels(diameter_nm, classes_nm)))


def confusion_by_size(true_labels: np.ndarray, predicted_labels: np.ndarray, diameter_nm: np.ndarray, n_classes: int,
                      bin_edges_nm: Sequence[float] = tuple(range(1, 11))) -> np.ndarray:
    """Confusion matrices (bins x true x predicted, counts) per size bin of the true diameter (nm; bins between
    consecutive ``bin_edges_nm``, the last one closed; diameters outside them are not counted)."""
    edges = np.asarray(bin_edges_nm, dtype=np.float64)
    d = np.asarray(diameter_nm, dtype=np.float64)
    b = np.searchsorted(edges, d, side="right") - 1
    b[d == edges[-1]] = edges.size - 2
    ok = (b >= 0) & (b < edges.size - 1)
    out = np.zeros((edges.size - 1, n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (b[ok], np.asarray(true_labels)[ok], np.asarray(predicted_labels)[ok]), 1)
    return out


def size_errors_by_family(true_labels: np.ndarray, true_nm: np.ndarray, predicted_nm: np.ndarray,
                          families: Sequence[str]) -> dict[str, float]:
    """Mean absolute error (nm) of a diameter per true family (NaN where a family has no rows)."""
    labels = np.asarray(true_labels)
    err = np.abs(np.asarray(predicted_nm, dtype=np.float64) - np.asarray(true_nm, dtype=np.float64))
    return {f: float(err[labels == i].mean()) if np.any(labels == i) else float("nan") for i, f in enumerate(families)}


def interval_coverage(truth: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """Share of rows within the 68 % and 95 % Gaussian intervals (mean +- 1 and 1.96 std), keys "68" and "95"."""
    err = np.abs(np.asarray(truth, dtype=np.float64) - np.asarray(mean, dtype=np.float64))
    std = np.asarray(std, dtype=np.float64)
    return {k: float(np.mean(err <= z * std)) for k, z in INTERVAL_LEVELS.items()}


def condition_metrics(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], config: Mapping[str, Any],
                      temperature: float = 1.0, interval_calibration: np.ndarray | None = None,
                      dispersion_slope: np.ndarray | None = None) -> dict[str, Any]:
    """Every metric of one evaluation set: ``outputs`` of the network (``family_logits``, ``continuous``), the set's
    ``targets`` (``family_probabilities``, ``diameter_nm``, ``volume_diameter_nm``, ``dispersion``), its ``config``;
    the family temperature, the interval calibration (2 x K, ``fit_interval_calibration``) and its widening with the
    estimated dispersion (K, ``fit_covariate_slope``) when fitted."""
    families = list(config["families"])
    probs = softmax(outputs["family_logits"], temperature)
    true_p = np.asarray(targets["family_probabilities"], dtype=np.float64)
    out: dict[str, Any] = {"n": int(probs.shape[0])} | shape_metrics(probs, true_p, families)
    mean, std = cluster_continuous_estimates(outputs["continuous"], config)
    if interval_calibration is not None:
        std = calibrated_std(std, interval_calibration)
    if dispersion_slope is not None:
        std = widened_std(std, mean[:, 2], dispersion_slope)
    d_n, d_v = (np.asarray(targets[k], dtype=np.float64) for k in ("diameter_nm", "volume_diameter_nm"))
    labels = true_p.argmax(axis=1)
    pred_dn, pred_dv = np.exp(mean[:, 0]), np.exp(mean[:, 1])
    out |= {"size_class_acc": size_class_accuracy(mean[:, 0], std[:, 0], d_n),
            "size_class_acc_pm1": float(np.mean(np.abs(
                class_probabilities(mean[:, 0], std[:, 0], SIZE_CLASSES_NM).argmax(1) - size_class_labels(d_n)) <= 1)),
            "mae_dn_nm": float(np.mean(np.abs(pred_dn - d_n))), "mae_dv_nm": float(np.mean(np.abs(pred_dv - d_v))),
            "mae_dispersion": float(np.mean(np.abs(mean[:, 2] - np.asarray(targets["dispersion"])))),
            "mae_dn_nm_by_family": size_errors_by_family(labels, d_n, pred_dn, families),
            "mae_dv_nm_by_family": size_errors_by_family(labels, d_v, pred_dv, families),
            "coverage_log_dn": interval_coverage(np.log(d_n), mean[:, 0], std[:, 0]),
            "coverage_log_dv": interval_coverage(np.log(d_v), mean[:, 1], std[:, 1]),
            "confusion6_by_size_nm": confusion_by_size(labels, probs.argmax(1), d_n, len(families)).tolist()}
    return out


@dataclass(frozen=True)
class EvaluationCondition:
    """One held-out test condition: the mask ``mode`` (:data:`MASK_MODES`), the dispersion (a number: every population
    exactly that; None: drawn as in training), ``counts_per_point`` (a number: that counting level at the WAXS level;
    None: the augmentation's range), and fixed Q edges (1/A; None: drawn)."""

    mode: str = "both"
    dispersion: float | None = 0.0
    counts_per_point: float | None = None
    saxs_end_q: float | None = None
    waxs_start_q: float | None = None

    def __post_init__(self):
        if self.mode not in MASK_MODES:
            raise ValueError(f"mode {self.mode!r}; accepted: {', '.join(MASK_MODES)}")

    @property
    def name(self) -> str:
        parts = [self.mode, "disp drawn" if self.dispersion is None else f"disp {self.dispersion:g}"]
        parts += [f"{k} {getattr(self, k):g}" for k in ("counts_per_point", "saxs_end_q", "waxs_start_q")
                  if getattr(self, k) is not None]
        return ", ".join(parts)

    def augment_settings(self, base: MetalAugmentSettings) -> MetalAugmentSettings:
        """``base`` with this condition's mask mode, counting level and Q edges fixed."""
        p = [0.0] * len(MASK_MODES)
        p[MASK_MODES.index(self.mode)] = 1.0
        fixed: dict[str, Any] = {"mask_probabilities": tuple(p)}
        for key in ("counts_per_point", "saxs_end_q", "waxs_start_q"):
            if getattr(self, key) is not None:
                fixed[key] = (float(getattr(self, key)),) * 2
        return replace(base, **fixed)


def evaluation_conditions(modes: Sequence[str] = MASK_MODES, dispersions: Sequence[float | None] = (0.0, 0.2, None),
                          counts: Sequence[float | None] = (None,)) -> list[EvaluationCondition]:
    """Every combination of mask mode x dispersion x counting level."""
    return [EvaluationCondition(m, d, c) for m in modes for d in dispersions for c in counts]


def draw_evaluation_set(bases: list[MetalBasis], condition: EvaluationCondition, size: int, seed: int,
                        augment: MetalAugmentSettings | None = None, ranges: MetalPopulationRanges | None = None,
                        part: str = "test", test_every: int = 5, populations_of_series: bool = True) -> DrawnSet:
    """``size`` single-family populations of the held-out clusters (``part``) under ``condition`` (inputs, targets),
    drawn with ``seed``; other ranges (strain, mean diameters) from ``ranges`` (default: strain +-1 %). Polydisperse
    populations (a fixed dispersion >= :data:`~.metal_sources.SERIES_DISPERSION`) of a family with too few held-out
    clusters to form one come from its whole series, trained clusters included (:func:`~.metal_sources.population_bases`;
    ``populations_of_series=False``, or a drawn dispersion: held-out clusters only)."""
    ranges = ranges or MetalPopulationRanges(strain=(-0.01, 0.01))
    disp = ranges.dispersion if condition.dispersion is None else (condition.dispersion,) * 2
    ranges = replace(ranges, dispersion=disp, mixture_share=0.0)
    aug = MetalAugmenter(bases[0].q, settings=condition.augment_settings(augment or MetalAugmentSettings()))
    polydisperse = (populations_of_series and condition.dispersion is not None
                    and condition.dispersion >= SERIES_DISPERSION)
    drawn = population_bases(bases, part, test_every, polydisperse=polydisperse)
    return draw_set(MetalSource(drawn, aug, size, ranges, part="all", test_every=test_every), seed=seed)


#: Flags that say what was measured rather than doubt the answer (left out of the share of flagged answers).
INFORMATIONAL_FLAGS = frozenset({"no_waxs"})


def estimate_arrays(estimates: Sequence[Any], families: Sequence[str], shape_key: str = "shape") -> dict[str, np.ndarray]:
    """Arrays of a predictor's answers (``TaskEstimate`` answers): ``family_probabilities`` (rows x ``families``),
    ``size_nm``, ``size_std_nm``, ``size_volume_nm``, ``dispersion`` (NaN where not sized), ``size_probabilities``
    (rows x size classes) with ``size_classes_nm`` (the probabilities of an answer without shape or size, where no
    particles were found or beyond the trained sizes, taken as chance: 1 / columns), ``status`` and ``flagged`` (any flag but
    :data:`INFORMATIONAL_FLAGS`), and ``flags`` (rows x names in ``flag_names``, bool)."""
    if not estimates:
        raise ValueError("estimates: accepted: one or more TaskEstimate")
    classes = np.array(sorted(estimates[0].size_probabilities), dtype=np.float64)
    names = sorted({f for e in estimates for f in e.flags})

    def value(e, key, i):
        return float(e.values.get(key, (np.nan, np.nan))[i])

    def answered(rows: np.ndarray) -> np.ndarray:
        """Rows without an answer (no particles found, beyond the trained sizes: NaN) as chance, 1 / columns."""
        rows = np.array(rows, dtype=np.float64)
        rows[~np.isfinite(rows).all(axis=1)] = 1.0 / rows.shape[1]
        return rows
    return {"family_probabilities": answered([[e.classes[shape_key][f] for f in families] for e in estimates]),
            "size_nm": np.array([value(e, "size_nm", 0) for e in estimates]),
            "size_std_nm": np.array([value(e, "size_nm", 1) for e in estimates]),
            "size_volume_nm": np.array([value(e, "size_volume_nm", 0) for e in estimates]),
            "dispersion": np.array([value(e, "dispersion", 0) for e in estimates]),
            "size_classes_nm": classes,
            "size_probabilities": answered([[e.size_probabilities[c] for c in classes] for e in estimates]),
            "status": np.array([e.status for e in estimates]),
            "flagged": np.array([bool(set(e.flags) - INFORMATIONAL_FLAGS) for e in estimates]),
            "flag_names": np.array(names, dtype=object),
            "flags": np.array([[f in e.flags for f in names] for e in estimates], dtype=bool).reshape(len(estimates),
                                                                                                       len(names))}


def estimate_metrics(arrays: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], families: Sequence[str],
                     n_bins: int = 15) -> dict[str, Any]:
    """The figures of one set from :func:`estimate_arrays` and the set's ``targets`` (``family_probabilities``,
    ``diameter_nm``, ``volume_diameter_nm``): shape accuracy and ECE (:func:`shape_metrics`), the size class of
    D_N (most probable class of the answer's ``size_probabilities``; exact and within one class) and its top-1 ECE,
    over every row; MAE of D_N and D_V (nm), 68 / 95 % coverage of D_N's interval (in ln D: |ln D - ln D_est| <=
    z sigma / D_est) and MAE per family over the sized rows (``sized``: their share); the share ``flagged``, the
    share of each flag, confusion matrices of families and structure groups per 1 nm bin of D_N."""
    families = list(families)
    probs = np.asarray(arrays["family_probabilities"], dtype=np.float64)
    true_p = np.asarray(targets["family_probabilities"], dtype=np.float64)
    d_n, d_v = (np.asarray(targets[k], dtype=np.float64) for k in ("diameter_nm", "volume_diameter_nm"))
    out: dict[str, Any] = {"n": int(probs.shape[0])} | shape_metrics(probs, true_p, families, n_bins)
    classes = np.asarray(arrays["size_classes_nm"], dtype=np.float64)
    p_size = np.asarray(arrays["size_probabilities"], dtype=np.float64)
    true_class = size_class_labels(d_n, classes)
    pred_class = p_size.argmax(axis=1)
    sized = np.isfinite(arrays["size_nm"]) & np.isfinite(arrays["size_std_nm"])
    est, std, est_v = (np.asarray(arrays[k], dtype=np.float64)[sized] for k in ("size_nm", "size_std_nm",
                                                                                "size_volume_nm"))
    labels = true_p.argmax(axis=1)
    g = structure_group_matrix(families)
    nan = float("nan")
    out |= {"size_class_acc": float(np.mean(pred_class == true_class)),
            "size_class_acc_pm1": float(np.mean(np.abs(pred_class - true_class) <= 1)),
            "ece_size": expected_calibration_error(p_size, true_class, n_bins),
            "sized": float(np.mean(sized)),
            "mae_dn_nm": float(np.mean(np.abs(est - d_n[sized]))) if sized.any() else nan,
            "mae_dv_nm": float(np.mean(np.abs(est_v - d_v[sized]))) if sized.any() else nan,
            "coverage_dn": (interval_coverage(np.log(d_n[sized]), np.log(est), std / est) if sized.any()
                            else {k: nan for k in INTERVAL_LEVELS}),
            "mae_dn_nm_by_family": size_errors_by_family(labels[sized], d_n[sized], est, families),
            "mae_dv_nm_by_family": size_errors_by_family(labels[sized], d_v[sized], est_v, families),
            "flagged": float(np.mean(arrays["flagged"])),
            "flags": {str(f): float(np.mean(arrays["flags"][:, i])) for i, f in enumerate(arrays["flag_names"])},
            "confusion6_by_size_nm": confusion_by_size(labels, probs.argmax(1), d_n, len(families)).tolist(),
            "confusion3_by_size_nm": confusion_by_size((true_p @ g).argmax(1), (probs @ g).argmax(1), d_n,
                                                       len(STRUCTURE_GROUPS)).tolist()}
    return out
