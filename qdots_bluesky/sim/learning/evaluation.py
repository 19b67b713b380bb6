"""Evaluation report of a trained model on its held-out simulations.

Confusion matrices, error per size, per concentration and per SNR on the reference conditions,
robustness curves without retraining (Qmax, Qmin, number of points, concentration, SNR, a lattice
parameter beyond the library's, laboratory data), calibration (reliability diagram, ECE), learning
curves, and for models with a presence head how often pure solvent and dilute patterns get the
no_nanocrystals flag; PNG figures plus one JSON. Every pattern is sized by the same
:class:`~qdots_bluesky.predictor.Predictor` users run (on the CPU), which routes coarsely sampled patterns to the
bundle's coarse-sampling specialist.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ...models.calibration import expected_calibration_error
from .augment import AugmentationSettings, Augmenter
from ..physics.library import load_library
from .sources import (
    REFERENCE_FRACTIONS,
    REFERENCE_SNRS,
    REFERENCE_SOLVENTS,
    blank_test_set,
    class_labels,
    reference_test_set,
)

#: Area fraction of nanocrystal signal for a PbS weight fraction w in hexane/toluene, A = k w / (k w + 1 - w),
#: with k = 2.345 fitted to the reference's pairs (100/44/20/7 % w/w <-> 100/65/37/15 % of area).
AREA_PER_WEIGHT = 2.345


def weight_to_area_fraction(w: float) -> float:
    return AREA_PER_WEIGHT * w / (AREA_PER_WEIGHT * w + 1.0 - w)


ROBUSTNESS = {
    "q_max": [15.0, 10.0, 8.0, 6.0, 5.0, 4.4, 4.0, 3.5, 3.0],
    "q_min": [1.0, 1.3, 1.5, 1.7, 2.0],
    "n_points": [5004, 2501, 1251, 626, 501, 251],
    "weight_fraction": [1.0, 0.44, 0.20, 0.07, 0.05, 0.04, 0.03, 0.02],
    "snr": [200.0, 122.0, 46.0, 24.0, 14.0, 10.0, 7.0],
    # every held-out simulation's lattice parameter changed by this fraction (the library spans -0.25..+0.51 %)
    "lattice_change": [-0.01, -0.005, -0.002, 0.0, 0.002, 0.005, 0.01],
}


def source_q_step(meta: dict) -> np.ndarray:
    """Mean Q step (1/A) of each augmented pattern's measured axis, from the augmenter's metadata."""
    return (np.asarray(meta["q_max"], float) - np.asarray(meta["q_min"], float)) / np.maximum(np.asarray(meta["n_points"]) - 1, 1)


def balanced_draws(values, n_sims: int, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """A value per pattern of ``np.tile(sims, repeats)``: each simulation takes the values in turn from a random
    start (a Latin square), so every value is drawn equally often for every simulation once ``repeats`` is a
    multiple of their number. Less variance than independent draws: a curve point does not move with the luck
    of how many of its patterns drew the noisiest condition."""
    start = rng.integers(len(values), size=n_sims)
    turn = (np.arange(repeats)[:, None] + start[None, :]) % len(values)
    return np.asarray(values, dtype=float)[turn.ravel()]


def binomial_standard_error(hits: np.ndarray) -> float:
    """Standard error of an accuracy measured on len(hits) independent patterns, sqrt(p (1 - p) / n)."""
    p = float(np.mean(hits))
    return float(np.sqrt(p * (1.0 - p) / hits.size))


def step_reports(q_step: np.ndarray, n: int) -> list[dict[str, float]]:
    """One standardization report per pattern giving its source Q step (1/A; ``q_step`` one per pattern or one for
    all): the predictor sends the patterns with a step of at least its ``coarse_min_q_step`` to the specialist."""
    return [{"source_q_step": float(v)} for v in np.broadcast_to(np.asarray(q_step, float), (n,))]


def estimate_arrays(estimates: list) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray,
                                              np.ndarray]:
    """The predictor's SizeEstimates as arrays: (size probabilities, dispersion probabilities, nanocrystal
    probability or None without that head, size_nm, size_std_nm, answered size class).

    The answered class is the most probable size class where the predictor gives a size and -1 where it gives
    none (status no_nanocrystals, above_range, below_range): a pattern the user gets no size for counts as a miss.
    """
    ps = np.array([list(e.probabilities.values()) for e in estimates])
    pd = np.array([list(e.dispersion_probabilities.values()) for e in estimates])
    pn = None if not estimates or estimates[0].nanocrystal_probability is None else \
        np.array([e.nanocrystal_probability for e in estimates])
    sized = np.array([e.status == "sized" for e in estimates], dtype=bool)
    answered = np.where(sized, ps.argmax(1), -1) if estimates else np.zeros(0, dtype=np.intp)
    return ps, pd, pn, np.array([e.size_nm for e in estimates]), np.array([e.size_std_nm for e in estimates]), answered


def _reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15):
    """Accuracy, mean confidence and count per confidence bin (the bins of expected_calibration_error)."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(float)
    which = np.minimum((conf * n_bins).astype(np.intp), n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / counts
    return acc, mean_conf, counts


def evaluate_model(bundle_path: str | Path, library_path: str | Path, out_dir: str | Path, seed: int = 123,
                   progress: bool = True, robustness_repeats: int = 4, instrument_fwhm_q=None) -> dict:
    """Write the evaluation report (PNGs + report.json) into out_dir and return the figures.

    ``instrument_fwhm_q``: the instrument resolution told to a network with that input ((0, 0): the held-out DSE
    simulations' own, none); the laboratory curve is always sized as of an unknown instrument (its resolution is a
    2theta one). Default None: unknown.

    Each point of a robustness curve draws every held-out simulation ``robustness_repeats`` times per
    reference solvent, with fresh noise and the reference fractions and SNRs taken in turn (balanced_draws):
    4 x 272 x 2 = 2176 patterns, a binomial standard error of about 0.65 % at 90 % accuracy, which
    ``report["robustness_standard_error"]`` gives for every point; 16 repeats halve it.
    """
    if int(robustness_repeats) < 1:
        raise ValueError(f"robustness_repeats={robustness_repeats!r}; accepted: an integer >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from ...predictor import Predictor

    predictor = Predictor.from_bundle(bundle_path, device="cpu", batch_size=2048,  # as users size their patterns
                                      instrument_fwhm_q=instrument_fwhm_q)
    unknown_instrument = (predictor if instrument_fwhm_q is None
                          else Predictor(predictor.contents, "cpu", batch_size=2048))  # for laboratory scans
    meta = predictor.metadata
    has_coarse = predictor.coarse is not None
    lib = load_library(library_path, grid="q")
    size_classes = np.asarray(meta["size_classes_nm"])
    disp_classes = np.asarray(meta["dispersion_classes"])
    test = np.asarray(meta["split"]["test"])
    if test.max(initial=0) >= lib.n_patterns:
        raise ValueError(f"library {library_path} has {lib.n_patterns} patterns but the model's test split needs "
                         f"index {test.max()}: evaluate with the library the model was trained on")
    augmenter = Augmenter.from_library(lib, AugmentationSettings.from_dict(meta["augmentation"]))
    y_size = class_labels(lib.mean_diameter_nm, size_classes)
    y_disp = class_labels(lib.dispersion, disp_classes)
    report: dict = {"bundle": str(bundle_path), "library": str(library_path), "test_simulations": int(test.size),
                    "instrument_fwhm_q": None if instrument_fwhm_q is None else list(predictor.instrument_fwhm_q)}

    # reference conditions
    x, idx, cond = reference_test_set(augmenter, test, seed)
    ps, pd, pn, size_nm, size_std, pred = estimate_arrays(predictor.predict_standardized(x))
    truth = y_size[idx]
    ece = expected_calibration_error(ps, truth)
    acc_bins, conf_bins, count_bins = _reliability_bins(ps, truth)
    report["reference"] = {
        "patterns": int(idx.size),
        "size_accuracy": float(np.mean(pred == truth)),
        "size_within_one_class": float(np.mean(np.abs(pred - truth) <= 1)),
        "dispersion_accuracy": float(np.mean(pd.argmax(1) == y_disp[idx])),
        "size_mae_nm": float(np.nanmean(np.abs(size_nm - lib.mean_diameter_nm[idx]))),  # over the patterns given a size
        "no_size_share": float(np.mean(pred < 0)),
        "ece_size": ece,
        "accuracy_by_size_nm": {f"{c:g}": float(np.mean(pred[truth == i] == i)) for i, c in enumerate(size_classes)},
        "mae_nm_by_size_nm": {f"{c:g}": float(np.nanmean(np.abs(size_nm - lib.mean_diameter_nm[idx])[truth == i])) for i, c in enumerate(size_classes)},
        "accuracy_by_area_fraction": {f"{f:g}": float(np.mean((pred == truth)[cond["fraction"] == f])) for f in REFERENCE_FRACTIONS},
        "accuracy_by_snr": {f"{s:g}": float(np.mean((pred == truth)[cond["snr"] == s])) for s in REFERENCE_SNRS},
        "accuracy_by_solvent": {s: float(np.mean((pred == truth)[cond["solvent"] == s])) for s in REFERENCE_SOLVENTS},
        "size_confusion": np.bincount(truth * len(size_classes) + ps.argmax(1), minlength=len(size_classes) ** 2).reshape(len(size_classes), -1).tolist(),
        "dispersion_confusion": np.bincount(y_disp[idx] * len(disp_classes) + pd.argmax(1), minlength=len(disp_classes) ** 2).reshape(len(disp_classes), -1).tolist(),
        "reliability": {"accuracy": np.nan_to_num(acc_bins).tolist(), "confidence": np.nan_to_num(conf_bins).tolist(), "counts": count_bins.tolist()},
    }
    # the stated uncertainty: share of patterns within 1 and 2 size_std_nm of the true mean diameter, per condition
    err = np.abs(size_nm - lib.mean_diameter_nm[idx])
    within = {"1": err <= size_std, "2": err <= 2.0 * size_std}
    report["reference"]["size_within_std"] = {
        k: {"all": float(v.mean()),
            "by_area_fraction": {f"{f:g}": float(v[cond["fraction"] == f].mean()) for f in REFERENCE_FRACTIONS},
            "by_snr": {f"{q:g}": float(v[cond["snr"] == q].mean()) for q in REFERENCE_SNRS},
            "by_dispersion": {f"{c:g}": float(v[y_disp[idx] == i].mean()) for i, c in enumerate(disp_classes)
                              if np.any(y_disp[idx] == i)}}
        for k, v in within.items()}

    blank_set = blank_test_set(augmenter, seed + 2, repeats=256) if pn is not None else None
    if blank_set is not None:
        # the presence head: pure-solvent patterns must be flagged, patterns with nanocrystals must not
        flagged_blank = estimate_arrays(predictor.predict_standardized(blank_set[0]))[2] < 0.5
        labels = blank_set[1]
        blanks = {label: float(np.mean(flagged_blank[labels == label])) for label in dict.fromkeys(labels)}
        report["nanocrystal_detection"] = {
            "pure_solvent_flagged": blanks,
            "reference_flagged_by_area_fraction": {f"{f:g}": float(np.mean((pn < 0.5)[cond["fraction"] == f]))
                                                   for f in REFERENCE_FRACTIONS},
        }

    # robustness curves: vary one factor, the others drawn from the reference conditions
    rng = np.random.default_rng(seed + 1)
    curves: dict[str, dict[str, float]] = {}
    jobs = [(k, v) for k, values in ROBUSTNESS.items() for v in values] + [("lab", True)]
    sims = np.tile(test, int(robustness_repeats))
    routed_points: set[int] = set()
    errors: dict[str, dict[str, float]] = {}
    for key, value in tqdm(jobs, desc="robustness", disable=not progress):
        kwargs = dict(q_min=1.0, q_max=15.0, n_points=5004, lab=False, background=False)
        fraction = balanced_draws(REFERENCE_FRACTIONS, test.size, int(robustness_repeats), rng)
        snr = balanced_draws(REFERENCE_SNRS, test.size, int(robustness_repeats), rng)
        if key == "weight_fraction":
            fraction = np.full(sims.size, weight_to_area_fraction(value))
        elif key == "snr":
            snr = np.full(sims.size, value)
        elif key == "lab":
            kwargs.update(lab=True, q_max=None, q_min=None, n_points=None)
        elif key != "lattice_change":
            kwargs[key] = value
        drawn_from = augmenter.with_lattice_change(value, test) if key == "lattice_change" else augmenter
        correct, flagged, correct_main = [], [], []
        for solvent in REFERENCE_SOLVENTS:
            xs = []
            for f, s in set(zip(fraction.tolist(), snr.tolist())):
                sel = (fraction == f) & (snr == s)
                xr, m = drawn_from.fixed(sims[sel], rng, fraction=f, snr=s, solvent=solvent, **kwargs)
                xs.append((sims[sel], xr, source_q_step(m)))
            for ids, xr, step in xs:
                reports = step_reports(step, len(xr))
                arrays = estimate_arrays((unknown_instrument if key == "lab" else predictor).predict_standardized(xr, reports))
                pr, answered = arrays[2], arrays[5]
                if key == "n_points" and has_coarse:  # what the specialist adds, on the same draws
                    routed = predictor.coarse_rows(reports, len(xr)).any()
                    if routed:
                        routed_points.add(int(value))
                    answered_main = estimate_arrays(predictor.predict_standardized(xr))[5] if routed else answered
                    correct_main.append(answered_main == y_size[ids])
                correct.append(answered == y_size[ids])
                if pr is not None:
                    flagged.append(pr < 0.5)
        label = f"{value:g}" if key != "lab" else "cu_kalpha_flat_plate"
        hits = np.concatenate(correct)
        curves.setdefault(key, {})[label] = float(np.mean(hits))
        errors.setdefault(key, {})[label] = binomial_standard_error(hits)
        if correct_main:
            curves.setdefault("n_points_main_network", {})[f"{value:g}"] = float(np.mean(np.concatenate(correct_main)))
        if key == "weight_fraction" and flagged:
            report.setdefault("nanocrystal_detection", {}).setdefault("flagged_by_weight_fraction", {})[f"{value:g}"] = \
                float(np.mean(np.concatenate(flagged)))
    report["robustness"] = curves
    report["robustness_standard_error"] = errors
    if has_coarse:
        report["coarse_specialist"] = {
            "min_source_q_step": predictor.coarse_min_q_step,
            "n_points_routed": [n for n in ROBUSTNESS["n_points"] if n in routed_points],
            "training_metrics": predictor.contents.coarse.metadata.get("metrics", {}),
        }
    report["robustness_patterns_per_point"] = int(sims.size * len(REFERENCE_SOLVENTS))
    report["learning_curve"] = meta.get("history", [])
    report["training_metrics"] = meta.get("metrics", {})
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    _figures(report, size_classes, disp_classes, out_dir)
    return report


def _figures(report: dict, size_classes: np.ndarray, disp_classes: np.ndarray, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = report["reference"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), constrained_layout=True, gridspec_kw={"width_ratios": [2.2, 1]})
    cm = np.asarray(ref["size_confusion"], dtype=float)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = axes[0].imshow(cm, cmap="Blues", vmin=0, vmax=1)
    axes[0].set_xticks(range(len(size_classes)), [f"{c:g}" for c in size_classes], rotation=90)
    axes[0].set_yticks(range(len(size_classes)), [f"{c:g}" for c in size_classes])
    axes[0].set_xlabel("predicted mean diameter (nm)")
    axes[0].set_ylabel("true mean diameter (nm)")
    axes[0].set_title(f"size: accuracy {ref['size_accuracy']:.1%}, within one class {ref['size_within_one_class']:.1%}")
    fig.colorbar(im, ax=axes[0], fraction=0.04)
    cd = np.asarray(ref["dispersion_confusion"], dtype=float)
    cd = cd / np.maximum(cd.sum(1, keepdims=True), 1)
    axes[1].imshow(cd, cmap="Greens", vmin=0, vmax=1)
    labels = [f"{c:.0%}" for c in disp_classes]
    axes[1].set_xticks(range(len(labels)), labels)
    axes[1].set_yticks(range(len(labels)), labels)
    for (i, j), v in np.ndenumerate(cd):
        axes[1].text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    axes[1].set_xlabel("predicted dispersion")
    axes[1].set_ylabel("true dispersion")
    axes[1].set_title(f"dispersion: accuracy {ref['dispersion_accuracy']:.1%}")
    fig.savefig(out_dir / "confusion.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 4, figsize=(18, 8), constrained_layout=True)
    rob = report["robustness"]
    panels = [("q_max", "Qmax (1/A)", True), ("q_min", "Qmin (1/A)", False), ("n_points", "points on 1-15 1/A", True),
              ("weight_fraction", "PbS weight fraction", True), ("snr", "signal-to-noise ratio", True),
              ("lattice_change", "change of the lattice parameter", False)]
    panels = [p for p in panels if p[0] in rob]  # reports written before a curve existed lack it
    for ax, (key, label, log) in zip(axes.ravel(), panels):
        xs = [float(k) for k in rob[key]]
        se = report["robustness_standard_error"][key]
        ax.errorbar(xs, list(rob[key].values()), yerr=[se[k] for k in rob[key]], fmt="o-", capsize=3)
        if key == "n_points" and "n_points_main_network" in rob:
            ax.plot(xs, [rob["n_points_main_network"][k] for k in rob[key]], "s--", color="grey", ms=4,
                    label="main network alone")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_xlabel(label)
        ax.set_ylabel("size accuracy")
        ax.set_ylim(0, 1.02)
        ax.axhline(0.9, color="grey", lw=0.6, ls="--")
        if log:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(xs, [f"{v:g}" for v in xs], rotation=45)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels):-1]:
        ax.axis("off")
    ax = axes.ravel()[-1]
    acc = np.asarray(ref["reliability"]["accuracy"])
    conf = np.asarray(ref["reliability"]["confidence"])
    counts = np.asarray(ref["reliability"]["counts"])
    ok = counts > 0
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.plot(conf[ok], acc[ok], "o-")
    ax.set_xlabel("calibrated confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"calibration: ECE {ref['ece_size']:.3f}")
    fig.suptitle(f"robustness without retraining (lab Cu K-alpha flat plate: {rob['lab']['cu_kalpha_flat_plate']:.1%})")
    fig.savefig(out_dir / "robustness.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    sizes = [float(k) for k in ref["mae_nm_by_size_nm"]]
    axes[0].bar(sizes, list(ref["mae_nm_by_size_nm"].values()), width=0.35)
    axes[0].set_xlabel("true mean diameter (nm)")
    axes[0].set_ylabel("mean absolute error (nm)")
    fr = [float(k) for k in ref["accuracy_by_area_fraction"]]
    axes[1].plot(fr, list(ref["accuracy_by_area_fraction"].values()), "o-")
    axes[1].set_xlabel("nanocrystal fraction of area")
    axes[1].set_ylabel("size accuracy")
    hist = report["learning_curve"]
    if hist:
        ep = [h["epoch"] for h in hist]
        axes[2].plot(ep, [h["train_loss"] for h in hist], label="train loss")
        axes[2].plot(ep, [h["validation_loss"] for h in hist], label="validation loss")
        axes[2].set_xlabel("epoch")
        axes[2].legend()
    fig.savefig(out_dir / "errors_and_learning.png", dpi=110)
    plt.close(fig)
