"""Figures a person would rather look at than read (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

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
