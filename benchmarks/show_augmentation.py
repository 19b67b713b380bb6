"""Look at the augmentation and time it.

    python benchmarks/show_augmentation.py --library lib.h5 --out /tmp/augmentation.png [--bench]

Without --library a small library (2-10 nm, 5 and 20 % dispersion) is built in a temporary
folder. The figure shows clean patterns next to augmented ones: solvent fractions and noise
levels, Q-range truncation and coarse steps, the laboratory case (K-alpha doublet,
polarization, March-Dollase texture) and random draws of the default settings. --bench
times batches of 256 on the synchrotron-only, default (mixed) and lab-only settings.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _library(path: str | None):
    from qdots_bluesky.sim.physics.library import LibrarySettings, build_library, load_library

    if path:
        return load_library(path)
    tmp = Path(tempfile.mkdtemp()) / "aug_lib.h5"
    build_library(LibrarySettings(mean_diameters_nm=[2.0, 4.0, 6.0, 8.0, 10.0], dispersions=[0.05, 0.2],
                                  lattice_ratios=[1.0], tth_grid_deg=None), tmp, progress=True)
    return load_library(tmp)


def figure(lib, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdots_bluesky.sim.learning.augment import AugmentationSettings, Augmenter
    from qdots_bluesky.standardize import QGrid, standardize_batch

    aug = Augmenter.from_library(lib, AugmentationSettings())
    q = QGrid().q
    i = int(np.argmin(np.abs(lib.mean_diameter_nm - 6.0) + 10 * np.abs(lib.dispersion - 0.05)))
    clean, _ = standardize_batch(lib.q, lib.total[[i]], x_unit="q")
    off = dict(fraction=1.0, snr=np.inf, q_min=1.0, q_max=15.0, n_points=0, lab=False, background=0.0)
    fig, axes = plt.subplots(2, 3, figsize=(21, 10), gridspec_kw={"width_ratios": [1, 1, 0.6]})

    ax = axes[0, 0]
    ax.plot(q, clean[0], "k", lw=1, label="clean (standardized)")
    for k, (f, snr, solv) in enumerate([(0.65, 122, "hexane"), (0.37, 46, "toluene"), (0.15, 24, "hexane"),
                                        (0.04, 14, "toluene")]):
        X, _ = aug.fixed([i], np.random.default_rng(k), **{**off, "fraction": f, "snr": snr}, solvent=solv)
        ax.plot(q, X[0] + 1.5 * (k + 1), lw=0.6, label=f"f={f:.2f}, SNR {snr}, {solv}")
    ax.set(title=f"synchrotron: solvent and noise ({lib.mean_diameter_nm[i]:.0f} nm, {lib.dispersion[i]:.0%})",
           xlabel="Q (1/A)", ylabel="standardized intensity (offset)")
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[0, 1]
    ax.plot(q, clean[0], "k", lw=1, label="clean")
    cases = [dict(q_max=4.4, snr=80.0), dict(q_min=1.7, q_max=8.0, snr=80.0), dict(n_points=251, snr=80.0),
             dict(n_points=1251, snr=30.0, background=0.1)]
    for k, c in enumerate(cases):
        X, m = aug.fixed([i], np.random.default_rng(10 + k), **{**off, **c})
        ax.plot(q, X[0] + 1.5 * (k + 1), lw=0.6,
                label=f"Q {m['q_min'][0]:.2f}-{m['q_max'][0]:.2f}, {m['n_points'][0]} pts, SNR {c['snr']:.0f}"
                + (", background" if c.get("background") else ""))
    ax.set(title="Q-range truncation, coarse steps, background", xlabel="Q (1/A)")
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[1, 0]
    lab = {**off, "lab": True, "tth_max": 125.0, "monochromator": False}
    Xr, _ = aug.fixed([i], np.random.default_rng(0), **lab, po_r=1.0)
    ax.plot(q, clean[0], "k", lw=1, label="clean synchrotron")
    ax.plot(q, Xr[0] + 1.5, lw=0.8, label="lab Cu Ka1/Ka2, polarization, random")
    for k, d in enumerate(["100", "111", "110"]):
        X, _ = aug.fixed([i], np.random.default_rng(0), **lab, po_r=0.6, po_direction=d)
        ax.plot(q, X[0] + 1.5 * (k + 2), lw=0.8, label=f"lab, March-Dollase <{d}> r=0.6")
    Xn, _ = aug.fixed([i], np.random.default_rng(0), **{**lab, "snr": 40.0, "fraction": 0.9}, po_r=0.8,
                      po_direction="111")
    ax.plot(q, Xn[0] + 7.5, lw=0.6, label="lab, <111> r=0.8, f=0.9, SNR 40")
    ax.set(title="laboratory case (Cu K-alpha, flat plate, dried film)", xlabel="Q (1/A)", xlim=(1, 7.5))
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[1, 1]
    idx = np.random.default_rng(1).integers(0, lib.n_patterns, 6)
    X, m = aug.sample(idx, np.random.default_rng(2))
    for k in range(idx.size):
        label = (f"{lib.mean_diameter_nm[idx[k]]:.0f} nm; f={m['fraction'][k]:.2f} SNR {m['snr'][k]:.0f} "
                 f"{m['solvent'][k]}; Q {m['q_min'][k]:.2f}-{m['q_max'][k]:.2f}, {m['n_points'][k]} pts"
                 + (f"; lab <{m['po_direction'][k]}> r={m['po_r'][k]:.2f}" if m["lab"][k] else ""))
        ax.plot(q, X[k] + 1.5 * k, lw=0.6, label=label)
    ax.set(title="random draws, default settings", xlabel="Q (1/A)")
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[0, 2]
    j = int(np.argmin(np.abs(lib.mean_diameter_nm - 10.0) + 10 * np.abs(lib.dispersion - 0.05)))
    cj, _ = standardize_batch(lib.q, lib.total[[j]], x_unit="q")
    sync, _ = aug.fixed([j], np.random.default_rng(0), **{**off, "q_max": 7.2})
    labj, _ = aug.fixed([j], np.random.default_rng(0), **lab, po_r=1.0)
    sel = (q > 5.0) & (q < 6.5)
    ax.plot(q[sel], sync[0, sel] / sync[0, sel].max(), "k", lw=1, label="synchrotron (Q 1-7.2)")
    ax.plot(q[sel], labj[0, sel] / labj[0, sel].max(), lw=1, label="lab Cu Ka1 + 0.5 Ka2")
    from qdots_bluesky.sim.physics.instrument import CU_KA1_A, CU_KA2_A
    for qq in (2 * np.pi * np.sqrt(h) / 5.934 for h in (24, 27)):
        ax.axvline(qq, color="0.6", lw=0.5)
        ax.axvline(qq * CU_KA2_A / CU_KA1_A, color="C1", lw=0.5, ls="--")
    ax.set(title=f"K-alpha2 shoulders ({lib.mean_diameter_nm[j]:.0f} nm; dashed: Q lambda2/lambda1)",
           xlabel="Q (1/A)", ylabel="normalised")
    ax.legend(fontsize=8)

    ax = axes[1, 2]
    sel = (q > 1.5) & (q < 3.3)
    for d, r in (("100", 1.0), ("100", 0.6), ("111", 0.6), ("110", 0.6)):
        X, _ = aug.fixed([i], np.random.default_rng(0), **lab, po_r=r, po_direction=d)
        ax.plot(q[sel], X[0, sel], lw=1, label="random" if r == 1.0 else f"<{d}> r={r}")
    ax.set(title="March-Dollase texture: 111, 200, 220", xlabel="Q (1/A)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def bench(lib, batches: int = 20, warm: int = 60) -> None:
    from qdots_bluesky import standardize as std
    from qdots_bluesky.sim.learning.augment import AugmentationSettings, Augmenter

    cases = {
        "synchrotron, full range only": dict(lab_fraction=0.0, truncate_high_fraction=0.0, truncate_low_fraction=0.0,
                                             coarsen_fraction=0.0),
        "synchrotron (truncation, coarse steps)": dict(lab_fraction=0.0),
        "default (25 % lab)": dict(),
        "lab only": dict(lab_fraction=1.0),
    }
    for name, kw in cases.items():
        aug = Augmenter.from_library(lib, AugmentationSettings(**kw))
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(warm):
            aug.sample(rng.integers(0, lib.n_patterns, 256), rng)
        t_warm = time.perf_counter() - t0
        times, cpu = [], []
        for _ in range(batches):
            idx = rng.integers(0, lib.n_patterns, 256)
            t, c = time.perf_counter(), time.process_time()
            aug.sample(idx, rng)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        med = float(np.median(times))
        print(f"{name:40s} {256 / med:6.0f} patterns/s wall (median of {batches} batches of 256, best "
              f"{256 / min(times):.0f}/s), {np.median(cpu) * 1e3:.0f} CPU-ms per batch; warm-up {t_warm:.1f} s")
    ops = list(std._cache.values())
    mb = sum(o.data.nbytes + o.indices.nbytes + o.indptr.nbytes for o, _ in ops) / 2**20
    print(f"standardization cache: {len(ops)} operators, {mb:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", help="library file (HDF5 with a 'q' grid); default: build a small one")
    ap.add_argument("--out", default="/tmp/augmentation.png", help="PNG to write")
    ap.add_argument("--bench", action="store_true", help="also time batches of 256")
    ap.add_argument("--no-figure", action="store_true")
    a = ap.parse_args()
    lib = _library(a.library)
    if not a.no_figure:
        figure(lib, Path(a.out))
    if a.bench:
        bench(lib)


if __name__ == "__main__":
    main()
