"""Figure of a series of refinements (an in-situ synthesis): sizes, dispersion and strain against file order or time.

Four panels sharing the x axis: D_N and D_V (nm) with 1-e.s.d. error bars, the dispersion and the strain (%),
each with its e.s.d.; unsized patterns leave gaps. The x axis is the file order (1, 2, ...) or a time (or any
number) per pattern, e.g. read from each file's header.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .result import RefinementResult

__all__ = ["plot_series", "series_values"]


def series_values(results: Sequence[RefinementResult | None]) -> dict[str, np.ndarray]:
    """Arrays (NaN where a pattern was not sized or failed) of size_nm, size_std_nm, size_volume_nm,
    size_volume_std_nm, dispersion, dispersion_std, strain_percent, strain_std_percent, rwp_percent."""
    keys = ("size_nm", "size_std_nm", "size_volume_nm", "size_volume_std_nm", "dispersion", "dispersion_std")
    out = {k: np.full(len(results), np.nan) for k in keys + ("strain_percent", "strain_std_percent", "rwp_percent")}
    for i, r in enumerate(results):
        if r is None:
            continue
        out["rwp_percent"][i] = 100.0 * r.rwp
        if r.status != "sized":
            continue
        for k in keys:
            out[k][i] = getattr(r, k)
        out["strain_percent"][i] = 100.0 * r.strain
        out["strain_std_percent"][i] = 100.0 * r.strain_std
    return out


def plot_series(results: Sequence[RefinementResult | None], path: str | Path, *, x: Sequence[float] | None = None,
                x_label: str = "file", title: str | None = None) -> Path:
    """Save the series figure of ``results`` (one per pattern, None for a failed one) to ``path`` (PNG, PDF, SVG by
    suffix; default .png). ``x``: one number per pattern (default 1, 2, ...), labelled ``x_label``."""
    if not len(results):
        raise ValueError("no refinement results to plot; accepted: at least one pattern's result")
    xs = np.arange(1, len(results) + 1, dtype=float) if x is None else np.asarray(x, dtype=float)
    if xs.shape != (len(results),):
        raise ValueError(f"{xs.size} x values for {len(results)} patterns; accepted: one value per pattern")
    from matplotlib.figure import Figure  # one Figure per call, no pyplot state: apart from a user's figures

    v = series_values(results)
    path = Path(path)
    path = path if path.suffix else path.with_suffix(".png")
    fig = Figure(figsize=(8, 9))
    axes = fig.subplots(4, 1, sharex=True)
    axes[0].errorbar(xs, v["size_nm"], yerr=v["size_std_nm"], fmt="o-", ms=3, capsize=2, label="D_N (number mean)")
    axes[0].errorbar(xs, v["size_volume_nm"], yerr=v["size_volume_std_nm"], fmt="s--", ms=3, capsize=2,
                     label="D_V (volume-weighted)")
    axes[0].set_ylabel("diameter (nm)")
    axes[0].legend(fontsize=8)
    axes[1].errorbar(xs, v["dispersion"], yerr=v["dispersion_std"], fmt="o-", ms=3, capsize=2, color="tab:green")
    axes[1].set_ylabel("dispersion")
    axes[2].errorbar(xs, v["strain_percent"], yerr=v["strain_std_percent"], fmt="o-", ms=3, capsize=2,
                     color="tab:purple")
    axes[2].set_ylabel("strain (%)")
    axes[3].plot(xs, v["rwp_percent"], "o-", ms=3, color="0.3")
    axes[3].set_ylabel("Rwp (%)")
    axes[3].set_xlabel(x_label)
    sized = sum(r is not None and r.status == "sized" for r in results)
    for xi, r, d in zip(xs, results, v["size_nm"]):  # a habit other than the sphere series, or auto's choice, named
        if r is not None and r.status == "sized" and (r.habit != "sphere" or r.habit_reduced_chi2):
            axes[0].annotate(r.habit, (xi, d), textcoords="offset points", xytext=(3, 6), fontsize=6, rotation=30)
    axes[0].set_title(title or f"{sized} of {len(results)} patterns sized (error bars: 1 e.s.d.)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
