"""Validate the built-in solvent models (qdots_bluesky.sim.physics.solvents) against measured blanks.

Compares the physics model of liquid n-hexane and toluene with the measured blanks of the
reference work (X04SA, lambda = 0.564162 A, borosilicate capillaries) on Q 1-15 1/A after
normalising both to equal area, prints the agreement (correlation, relative RMS, main peak
positions), the same for the decoupling (hard-sphere centres) model, how distinguishable the
two solvents are, and the timings of solvent_pattern on 5004 points; saves a comparison figure.

    python benchmarks/validate_solvents.py [--data-dir ../shared/data/solvents] [--out /tmp/solvents_validation.png]

The measured files are read from where they are (never copied into the repository).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from qdots_bluesky.sim.physics import solvents as S
from qdots_bluesky.sim.physics.solvents import blanks, liquid

WAVELENGTH_A = 0.564162
Q_RANGE = (1.0, 15.0)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "solvents"


def _unit_area(q: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y / np.trapezoid(y, q)


def _rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    """RMS of a - b over the RMS of b."""
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("/tmp/solvents_validation.png"))
    args = ap.parse_args()

    # ---- timings (cold: RISM solved in this process; warm: new Q grid; cached: same grid)
    q5004 = np.linspace(1.0, 15.0, 5004)
    print("solvent_pattern on 5004 points (Q 1-15, lambda 0.56 A):")
    for name in S.solvent_names():
        t0 = time.perf_counter()
        S.solvent_pattern(name, q5004)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        S.solvent_pattern(name, q5004 * (1 + 1e-7))
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(100):
            S.solvent_pattern(name, q5004)
        cached = (time.perf_counter() - t0) / 100
        print(f"  {name:8s} first call {cold:6.3f} s (incl. RISM, {liquid.solve_rism(name).iterations} iterations), "
              f"new grid {warm * 1e3:6.1f} ms, cached {cached * 1e6:6.1f} us")

    # ---- agreement with the measured blanks
    data = {}
    for name in S.solvent_names():
        path = args.data_dir / f"{name}.xye"
        if not path.is_file():
            raise SystemExit(f"measured blank {path} not found; pass --data-dir")
        data[name] = S.load_solvent_blank(path, x_unit="tth", wavelength_a=WAVELENGTH_A)

    print(f"\nagreement on Q {Q_RANGE[0]}-{Q_RANGE[1]} 1/A, equal area, lambda {WAVELENGTH_A} A "
          "(relative RMS = RMS(model - data) / RMS(data)):")
    curves = {}
    for name, (q, y) in data.items():
        sel = (q >= Q_RANGE[0]) & (q <= Q_RANGE[1])
        qs, ys = q[sel], y[sel]
        d = _unit_area(qs, ys)
        comp = S.solvent_components(name, qs, WAVELENGTH_A)
        dec = S.solvent_components(name, qs, WAVELENGTH_A, liquid_model="decoupling")["total"]
        m = _unit_area(qs, comp["total"])
        md = _unit_area(qs, dec)
        curves[name] = (qs, d, m, md)
        r = S.compare_to_blank(name, q, y, WAVELENGTH_A, Q_RANGE)
        qd = np.linspace(0.8, 2.5, 1701)
        peak_dec = blanks.peak_position(qd, S.solvent_components(name, qd, WAVELENGTH_A, liquid_model="decoupling")["total"],
                                    0.8, 2.5, smooth_a=0.002)
        print(f"  {name:8s} RISM model:       correlation {r['correlation']:.4f}  relative RMS {r['relative_rms']:.4f}  "
              f"(scale + constant fitted: {r['relative_rms_fit']:.4f}, constant = {r['background_fraction']:+.3f} x mean)  "
              f"peak model {r['peak_model']:.3f} / data {r['peak_data']:.3f} 1/A")
        print(f"  {name:8s} decoupling model: correlation {np.corrcoef(md, d)[0, 1]:.4f}  relative RMS {_rel_rms(md, d):.4f}  "
              f"peak model {peak_dec:.3f} 1/A")
        for lo, hi in ((1.0, 2.5), (2.5, 6.0), (6.0, 15.0)):
            w = (qs >= lo) & (qs < hi)
            print(f"           RISM relative RMS on Q {lo:4.1f}-{hi:4.1f}: {_rel_rms(m[w], d[w]):.4f}")

    # ---- distinguishability: hexane vs toluene model, compared with model-data differences
    print("\ndistinguishability (equal area on each blank's Q 1-15 grid):")
    for name, (qs, d, m, _) in curves.items():
        other = [n for n in S.solvent_names() if n != name][0]
        mo = _unit_area(qs, S.solvent_pattern(other, qs, WAVELENGTH_A))
        own, cross, models = _rel_rms(m, d), _rel_rms(mo, d), _rel_rms(mo, m)
        print(f"  {name:8s} data: own model {own:.4f}, {other} model {cross:.4f} (relative RMS); "
              f"|hexane - toluene model| / RMS = {models:.4f} = {models / own:.1f} x the model-data difference; "
              f"correlation own {np.corrcoef(m, d)[0, 1]:.4f} vs other {np.corrcoef(mo, d)[0, 1]:.4f}")

    (qh, dh, mh, _), (qt, dt, mt, _) = curves["hexane"], curves["toluene"]
    if qh.shape == qt.shape and np.allclose(qh, qt):
        print(f"  measured blanks: |hexane - toluene| / RMS = {_rel_rms(dt, dh):.4f} (models: {_rel_rms(mt, mh):.4f}); "
              f"main-peak separation data {blanks.peak_position(qh, dh, 0.8, 2.5) - blanks.peak_position(qt, dt, 0.8, 2.5):.3f}, "
              f"model {blanks.peak_position(qh, mh, 0.8, 2.5) - blanks.peak_position(qt, mt, 0.8, 2.5):.3f} 1/A")

    # ---- figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    colours = {"hexane": "C0", "toluene": "C3"}
    for ax, (name, (qs, d, m, md)) in zip(axes[0], curves.items()):
        ax.plot(qs, d, "k", lw=0.6, label=f"measured {name} blank")
        ax.plot(qs, m, color=colours[name], lw=1.2, label="model (RISM liquid)")
        ax.plot(qs, md, color="0.6", lw=0.9, ls="--", label="decoupling model (hard-sphere centres)")
        ax.plot(qs, m - d, color="C2", lw=0.6, label="model - measured")
        ax.axhline(0, color="0.8", lw=0.5)
        ax.set_title(f"{name}: corr {np.corrcoef(m, d)[0, 1]:.4f}, relative RMS {_rel_rms(m, d):.3f}")
        ax.set_xlabel("Q (1/A)")
        ax.set_ylabel("intensity, unit area on Q 1-15")
        ax.legend(fontsize=8)
    for ax, xlim in zip(axes[1], ((1.0, 15.0), (0.8, 3.5))):
        for name, (qs, d, m, _) in curves.items():
            ax.plot(qs, d, color=colours[name], lw=0.6, alpha=0.6, label=f"measured {name}")
            ax.plot(qs, m, color=colours[name], lw=1.4, ls="--", label=f"model {name}")
        ax.set_xlim(*xlim)
        ax.set_xlabel("Q (1/A)")
        ax.set_yscale("log" if xlim[1] > 10 else "linear")
        ax.set_title("hexane vs toluene (equal area)" + (", main peak" if xlim[1] < 10 else ", log scale"))
        ax.legend(fontsize=8)
    fig.suptitle(f"Built-in solvent models vs measured blanks (X04SA, lambda {WAVELENGTH_A} A)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"\nfigure: {args.out}")


if __name__ == "__main__":
    main()
