"""``qdots demo --system gold``: a simulated gold synthesis, sized and classified live, stored in Tiled.

The beamline is :func:`qdots_bluesky.sim.beamline.gold_synthesis_devices` (a reactor whose clusters grow from
icosahedra through decahedra to fcc, a SAXS + WAXS detector whose blank-subtracted pattern the sizer reads); the
sizer is the same :class:`~.live_sizer.LiveSizer` as for quantum dots, loaded with a SAXS + WAXS shape + size
bundle, so the ``qdots_size`` stream holds what that bundle's task declares (structure and family probabilities,
sizes +- 1 sigma). :func:`gold_table` joins it with the reactor's truth, :func:`format_gold_table` prints it and
:func:`plot_gold_demo` draws structure probabilities and size over time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


#: The structures the reactor reports and the task's structure groups, in the same order.
STRUCTURES = ("icosahedron", "decahedron", "fcc")
GROUPS = ("icosahedral", "decahedral", "fcc")


def gold_table(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``table`` (:func:`~.demo.sizes_with_truth`) with the true structure fractions (``true_<structure>``; NaN, and
    no true size, before nucleation) and the predicted structure probabilities (``p_<group>``)."""
    out = dict(table)

    def truth(suffix: str) -> np.ndarray:
        key = next((k for k in table if k.startswith("truth:") and k.endswith(suffix)), None)
        return np.asarray(table[key], dtype=float) if key else np.full(len(table["seq_num"]), np.nan)

    before = truth("nucleated") == 0  # no particles yet: no true size or structure
    out["true_size_nm"] = np.where(before, np.nan, np.asarray(table["true_size_nm"], dtype=float))
    for s in STRUCTURES:
        out[f"true_{s}"] = np.where(before, np.nan, truth(f"true_{s}"))
    if "structure_probabilities" in table:
        p = np.asarray(table["structure_probabilities"], dtype=float)
        for j, g in enumerate(GROUPS):
            out[f"p_{g}"] = p[:, j]
    return out


def format_gold_table(table: dict[str, np.ndarray]) -> str:
    """A text table: event, reaction time, true size and dominant structure, predicted size +- 1 sigma, structure and
    its probability, status; then the mean size error, the share within 2 sigma and the share of right structures."""
    lines = [f"{'#':>3} {'t_reac(min)':>11} {'true D(nm)':>10} {'true structure':>20} {'predicted D(nm)':>16} "
             f"{'structure':>12} {'P':>5}  status"]
    true_frac = np.stack([np.asarray(table[f"true_{s}"], dtype=float) for s in STRUCTURES], axis=1)
    right = []
    for i in range(len(table["seq_num"])):
        size, std = float(table["size_nm"][i]), float(table["size_std_nm"][i])
        pred = f"{size:5.2f} ± {std:4.2f}" if np.isfinite(size) else "-"
        frac = true_frac[i]
        truth = (f"{GROUPS[int(np.argmax(frac))]} {np.max(frac):.2f}" if np.isfinite(frac).all() else "no particles")
        label = str(table["structure"][i]) if "structure" in table else ""
        p = float(table[f"p_{label}"][i]) if label in GROUPS else float("nan")
        if label in GROUPS and np.isfinite(frac).all() and np.nanmax(frac) > 0:
            right.append(GROUPS[int(np.nanargmax(frac))] == label)
        status = str(table["status"][i])
        note = str(table["message"][i]).split(";")[0][:60] if status != "ok" else ""
        elapsed = float(table["elapsed_s"][i]) / 60.0
        true_d = float(table["true_size_nm"][i])
        true_d = f"{true_d:.2f}" if np.isfinite(true_d) else "-"
        lines.append(f"{int(table['seq_num'][i]):>3} {elapsed:>11.1f} {true_d:>10} "
                     f"{truth:>20} {pred:>16} {label or '-':>12} {p:>5.2f}  {status}{f' ({note})' if note else ''}")
    err = np.asarray(table["size_nm"], dtype=float) - np.asarray(table["true_size_nm"], dtype=float)
    good = np.isfinite(err)
    if good.any():
        within = np.abs(err[good]) <= 2 * np.asarray(table["size_std_nm"], dtype=float)[good]
        lines.append(f"mean |predicted - true| = {np.mean(np.abs(err[good])):.2f} nm over {int(good.sum())} estimates "
                     f"({int(within.sum())} within 2 sigma); dominant structure right for {sum(right)} of {len(right)}")
    return "\n".join(lines)


def plot_gold_demo(path: str | Path, table: dict[str, np.ndarray], title: str = "") -> Path:
    """Save a two-panel figure over reaction time: the predicted structure probabilities (points) and the true
    number fractions (lines); the predicted size with 1-sigma bars and the true mean diameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path = path if path.suffix else path.with_suffix(".png")
    t = np.asarray(table["elapsed_s"], dtype=float) / 60.0
    status = np.asarray([str(v) for v in table["status"]])
    sized = np.isfinite(np.asarray(table["size_nm"], dtype=float))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, constrained_layout=True)
    for s, g, color in zip(STRUCTURES, GROUPS, ("tab:purple", "tab:green", "tab:orange")):
        ax1.plot(t, table[f"true_{s}"], "-", color=color, lw=1.5, label=f"true {s} fraction")
        if f"p_{g}" in table:  # filled: ok; open: flagged (out of distribution, low confidence, ...)
            p = np.asarray(table[f"p_{g}"], dtype=float)
            for m, face in ((sized & (status == "ok"), color), (sized & (status != "ok"), "none")):
                ax1.plot(t[m], p[m], "o", color=color, mfc=face, ms=4, label=f"P({g})" if face == color else None)
    ax1.set_ylabel("fraction / probability")
    ax1.set_ylim(-0.03, 1.03)
    ax1.legend(fontsize=7, ncol=2, loc="center right")
    ax1.grid(alpha=0.3)
    ax2.plot(t, table["true_size_nm"], "-", color="k", lw=1.5, label="true mean diameter")
    size, std = np.asarray(table["size_nm"], dtype=float), np.asarray(table["size_std_nm"], dtype=float)
    for m, name, color, marker in ((sized & (status == "ok"), "ok", "tab:blue", "o"),
                                   (sized & (status != "ok"), "flagged", "tab:orange", "s")):
        if m.any():
            ax2.errorbar(t[m], size[m], yerr=std[m], fmt=marker, ms=4, capsize=2, color=color,
                         label=f"predicted ± 1σ ({name})")
    ax2.set_xlabel("reaction time (min)")
    ax2.set_ylabel("number-weighted mean diameter (nm)")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle(title or "Live shape and size of gold nanoparticles during a simulated synthesis", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
