"""Figures a person would rather look at than read (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_simulated_pattern(path: str | Path, x: np.ndarray, total: np.ndarray, crystal: np.ndarray, compton: np.ndarray,
                           xlabel: str, title: str) -> Path:
    """Save a simulated pattern with its coherent and Compton components."""
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    ax.plot(x, total, lw=1.0, color="k", label="total")
    ax.plot(x, crystal, lw=0.8, color="tab:blue", label="crystal (coherent)")
    if np.any(compton):
        ax.plot(x, compton, lw=0.8, color="tab:orange", label="Compton (incoherent)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("intensity (electron units per nanocrystal)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_prediction(path: str | Path, q: np.ndarray, pattern: np.ndarray, cam: np.ndarray, estimate: Any,
                    title: str = "") -> Path:
    """Save a figure of a prediction (``estimate``: a :class:`~qdots_bluesky.predictor.SizeEstimate`): the standardized
    pattern over Q shaded by the class activation map, and the class probabilities."""
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(9, 6.5), height_ratios=[3, 2], constrained_layout=True)
    lo, hi = float(np.min(pattern)), float(np.max(pattern))
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    image = ax.imshow(np.asarray(cam, dtype=float)[None, :], extent=(float(q[0]), float(q[-1]), lo - pad, hi + pad),
                      aspect="auto", origin="lower", cmap="Oranges", vmin=0.0, vmax=1.0, alpha=0.55,
                      interpolation="nearest")
    ax.plot(q, pattern, lw=0.8, color="k")
    if not np.any(cam):
        ax.text(0.99, 0.97, "no Q region raises this class's logit (map all zero)", transform=ax.transAxes,
                ha="right", va="top", fontsize=8, color="0.3")
    ax.set_xlim(float(q[0]), float(q[-1]))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("Q (1/A)")
    ax.set_ylabel("standardized intensity (mean 1)")
    fig.colorbar(image, ax=ax, pad=0.01, label="class activation (size)")
    sized = estimate.status == "sized"
    confidence = f"{estimate.confidence:.2f}" if np.isfinite(estimate.confidence) else "not assessed"
    head = (f"D = {estimate.size_nm:.2f} ± {estimate.size_std_nm:.2f} nm (class {estimate.size_class_nm:.1f} nm, "
            f"p = {confidence}), dispersion {estimate.dispersion:.2f}")
    if not sized:  # no size to show: say why, as the summary does
        head = estimate.no_size_reason()
    elif estimate.size_volume_nm is not None:
        head += (f" ± {estimate.dispersion_std:.2f}\nD_V = {estimate.size_volume_nm:.2f} ± "
                 f"{estimate.size_volume_std_nm:.2f} nm, strain {100 * estimate.strain:+.2f} ± {100 * estimate.strain_std:.2f} %")
    flags = ", ".join(estimate.flags) or "no flags"
    if estimate.network != "main":
        flags += f" ({estimate.network}-sampling network)"
    ax.set_title(f"{title}\n{head}; {flags}" if title else f"{head}; {flags}", fontsize=10)

    classes = np.array(list(estimate.probabilities))
    probs = np.array(list(estimate.probabilities.values()))
    width = 0.8 * (np.min(np.diff(classes)) if classes.size > 1 else 0.5)
    bx.bar(classes, probs, width=width, color="tab:blue" if sized else "0.6", alpha=0.8,
           label="calibrated probability" if sized else "the network's class reading (no size given)")
    if sized:  # the network's class reading is drawn in every case; a size only where one is given
        bx.axvline(estimate.size_nm, color="tab:red", lw=1.5, label=f"mean {estimate.size_nm:.2f} nm")
        bx.axvspan(estimate.size_nm - estimate.size_std_nm, estimate.size_nm + estimate.size_std_nm, color="tab:red",
                   alpha=0.15, label=f"± {estimate.size_std_nm:.2f} nm")
        bx.axvline(estimate.size_regression_nm, color="tab:green", lw=1.0, ls="--",
                   label=f"regression {estimate.size_regression_nm:.2f} nm")
    bx.set_xlabel("mean diameter (nm)")
    bx.set_ylabel("probability")
    bx.set_ylim(0, 1.05)
    bx.set_xticks(classes)
    bx.tick_params(axis="x", labelsize=8)
    bx.legend(fontsize=8, loc="upper right")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)



def plot_task_prediction(path: str | Path, q: np.ndarray, network_input: np.ndarray, estimate: Any,
                         title: str = "") -> Path:
    """Save the figure of a SAXS + WAXS model's answer: the pattern as the network read it (asinh of the intensity
    over its median, measured points only, on log Q) and the calibrated class probabilities (each class target and
    its groups), with the sizes +- 1 sigma in the title."""
    classes = list(estimate.classes.items())
    fig, axes = plt.subplots(1, 1 + len(classes), figsize=(5 + 3 * len(classes), 4), constrained_layout=True,
                             gridspec_kw={"width_ratios": [2.2] + [1] * len(classes)})
    axes = np.atleast_1d(axes)
    measured = network_input[1] > 0.5
    axes[0].plot(q[measured], network_input[0][measured], ".", ms=2, color="k")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("Q (1/A)")
    axes[0].set_ylabel("asinh(I / median I)")
    for ax, (name, probabilities) in zip(axes[1:], classes):
        labels = list(probabilities)
        ax.barh(range(len(labels)), [probabilities[k] for k in labels], color="tab:blue")
        ax.set_yticks(range(len(labels)), [k.replace("_", " ") for k in labels])
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"P({name})")
        ax.invert_yaxis()
    sizes = ", ".join(f"{k} {v:.2f} ± {s:.2f}" for k, (v, s) in estimate.values.items() if np.isfinite(v))
    fig.suptitle(f"{title}\n{sizes or estimate.summary()}", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
