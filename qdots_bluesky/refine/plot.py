"""Rietveld-style figure of a refinement: observed, calculated, components, difference; values in the title."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .result import RefinementResult

__all__ = ["plot_refinement"]

X_AXES = ("q", "tth")


def plot_refinement(result: RefinementResult, path: str | Path, *, x: str = "q", title: str | None = None,
                    label: str = "") -> Path:
    """Save a figure of ``result`` (needs its curves) to ``path`` (PNG, PDF, SVG by suffix; default .png).

    Top: observed (points), calculated (line) and its components (dots, each blank or solvent, background);
    bottom: observed - calculated. ``x``: 'q' (1/A) or 'tth' (2theta deg, where the points have one). ``title``
    replaces the default (the refined values); ``label`` (e.g. an event) goes before it.
    """
    if x not in X_AXES:
        raise ValueError(f"x axis {x!r}; accepted: 'q' (1/A) or 'tth' (2theta, degrees)")
    c = result.curves
    if c is None:
        raise ValueError("the result holds no curves; refine with keep_curves=True to plot it")
    if x == "tth" and c.tth is None:
        raise ValueError("these points have no 2theta; plot with x='q'")
    from matplotlib.figure import Figure  # one Figure per call, no pyplot state: apart from a user's figures

    path = Path(path)
    path = path if path.suffix else path.with_suffix(".png")
    xs = c.q if x == "q" else c.tth
    fig = Figure(figsize=(10, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(xs, c.observed, ".", ms=1.5, color="0.2", label="observed")
    top.plot(xs, c.calculated, "-", lw=1.0, color="tab:red", label="calculated")
    colours = iter(["tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:olive"])
    for name, comp in c.components.items():
        if np.any(comp != 0):
            top.plot(xs, comp, "-", lw=0.8, color=next(colours, "0.5"), label=name)
    top.set_ylabel("intensity")
    top.legend(fontsize=8, loc="upper right")
    diff = c.observed - c.calculated
    bottom.plot(xs, diff, "-", lw=0.6, color="tab:blue")
    bottom.axhline(0.0, color="0.5", lw=0.5)
    bottom.set_ylabel("obs - calc")
    bottom.set_xlabel("Q (1/Å)" if x == "q" else "2θ (deg)")
    if title is None:
        if result.status == "sized":
            habit = "" if result.habit == "sphere" and not result.habit_reduced_chi2 else f" ({result.habit})"
            title = (f"{result.material}{habit}: D_N {result.size_nm:.2f} ± {result.size_std_nm:.2f} nm, D_V "
                     f"{result.size_volume_nm:.2f} ± {result.size_volume_std_nm:.2f} nm, dispersion "
                     f"{result.dispersion:.3f} ± {result.dispersion_std:.3f}, strain {100 * result.strain:+.3f} %\n"
                     f"Rwp {100 * result.rwp:.2f} % (expected {100 * result.rwp_expected:.2f} %), "
                     f"χ²_red {result.reduced_chi2:.2f}" + (f", flags: {', '.join(result.flags)}" if result.flags else ""))
        else:
            title = f"{result.material}: no nanocrystals; Rwp {100 * result.rwp:.2f} %"
    top.set_title(f"{label}: {title}" if label else title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
