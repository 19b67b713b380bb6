"""Speed of the DSE simulator: one 21 nm PbS cluster, scaling with size and number of patterns,
the whole reference library, and DebyeCalculator (pip `debyecalculator`, CPU) on the same clusters.

    python benchmarks/bench_dse.py [--skip-library] [--skip-debyecalculator] [--debyecalculator-max-nm 10]

Prints a table per part; times are wall-clock seconds on this machine, pair-histogram cache disabled
(every cluster computed from scratch) unless stated.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ["QDOTS_CACHE_DIR"] = "off"

from qdots_bluesky.sim.physics.clusters import build_series_cluster, build_sphere_cluster  # noqa: E402
from qdots_bluesky.sim.physics.dse import debye_pattern  # noqa: E402
from qdots_bluesky.sim.physics.library import LibrarySettings, build_library  # noqa: E402
from qdots_bluesky.sim.physics.materials import CrystalStructure, get_structure  # noqa: E402
from qdots_bluesky.sim.physics.pair_histogram import lattice_pair_histogram  # noqa: E402

Q = np.linspace(1.0, 15.0, 5004)
PBS = get_structure("PbS")


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def single_cluster() -> None:
    print("\n== one 21 nm PbS cluster on 5004 Q points (target <= 2 s) ==")
    print(f"{'cluster':>28} {'atoms':>8} {'build s':>8} {'pairs s':>8} {'DSE s':>7} {'total s':>8} {'distances':>9}")
    for label, make in (("sphere D = 21 nm", lambda: build_sphere_cluster(PBS, 21.0)),
                        ("series n = 45 (20.9 nm)", lambda: build_series_cluster(PBS, 45))):
        make()  # warm up imports and allocators
        cluster, t_build = timed(make)
        hist, t_hist = timed(lattice_pair_histogram, cluster)
        _, t_dse = timed(debye_pattern, hist, Q)
        print(f"{label:>28} {cluster.n_atoms:>8} {t_build:>8.3f} {t_hist:>8.3f} {t_dse:>7.3f} "
              f"{t_build + t_hist + t_dse:>8.3f} {hist.distances.size:>9}")


def scaling_with_size() -> None:
    print("\n== time vs cluster size (series clusters, 5004 Q points) ==")
    print(f"{'n':>4} {'D nm':>6} {'atoms':>8} {'distances':>9} {'build+pairs s':>13} {'DSE s':>7}")
    for n in (5, 10, 15, 20, 25, 30, 35, 40, 45):
        cluster, t_build = timed(build_series_cluster, PBS, n)
        hist, t_hist = timed(lattice_pair_histogram, cluster)
        _, t_dse = timed(debye_pattern, hist, Q)
        print(f"{n:>4} {cluster.diameter_nm:>6.2f} {cluster.n_atoms:>8} {hist.distances.size:>9} {t_build + t_hist:>13.3f} {t_dse:>7.3f}")


def scaling_with_patterns(tmp: Path) -> None:
    print("\n== time vs number of patterns (Q grid 5004 points, fresh cache each) ==")
    print(f"{'patterns':>8} {'sizes':>5} {'disp':>4} {'strains':>7} {'seconds':>8} {'ms/pattern':>10}")
    ratios = LibrarySettings().lattice_ratios
    for sizes, disps, strains in ((17, 1, 1), (17, 4, 1), (17, 4, 5), (17, 4, 19)):
        settings = LibrarySettings(tth_grid_deg=None, dispersions=[0.05, 0.10, 0.15, 0.20][:disps],
                                   lattice_ratios=ratios[:strains] if strains > 1 else [1.0])
        with tempfile.TemporaryDirectory() as cache:
            os.environ["QDOTS_CACHE_DIR"] = cache
            _, t = timed(build_library, settings, tmp / "lib.h5", progress=False)
        n = sizes * disps * strains
        print(f"{n:>8} {sizes:>5} {disps:>4} {strains:>7} {t:>8.2f} {1e3 * t / n:>10.2f}")
    os.environ["QDOTS_CACHE_DIR"] = "off"


def full_library(tmp: Path) -> None:
    print("\n== the reference library: 1292 patterns on the 2theta grid (23195 points) and the Q grid (5004), cold cache (target <= 60 s) ==")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["QDOTS_CACHE_DIR"] = cache
        path, t = timed(build_library, LibrarySettings(), tmp / "library.h5", progress=False)
    os.environ["QDOTS_CACHE_DIR"] = "off"
    print(f"1292 patterns, both grids: {t:.1f} s, file {path.stat().st_size / 1e6:.0f} MB")


def debyecalculator(max_nm: float) -> None:
    print("\n== DebyeCalculator 1.1.1 (CPU) vs this simulator, same clusters, 5004 Q points ==")
    try:
        import torch
        from debyecalculator import DebyeCalculator
    except ImportError as exc:
        print(f"skipped: debyecalculator is not installed ({exc}); `pip install debyecalculator` after CPU torch")
        return
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"{'cluster':>12} {'atoms':>8} {'DebyeCalc s':>11} {'ours s':>7} {'speed-up':>8} {'shape diff':>10}")
    # same atoms, no Debye-Waller, no anomalous dispersion, no Compton: only the form-factor tables differ
    pbs_b0 = CrystalStructure.from_atoms(PBS.to_atoms(), "PbS", b_iso=0.0)
    for d in (2.0, 5.0, 10.0, 15.0, 20.0):
        if d > max_nm:
            break
        cluster = build_sphere_cluster(pbs_b0, d)
        atoms = cluster.to_atoms()
        calc = DebyeCalculator(qmin=1.0, qmax=15.0, qstep=14.0 / 5003, biso=0.0, device="cpu", batch_size=10000)
        (q_dc, iq_dc), t_dc = timed(calc.iq, atoms)
        q_dc = np.asarray(q_dc, dtype=float)
        t0 = time.perf_counter()
        ours = debye_pattern(lattice_pair_histogram(build_sphere_cluster(pbs_b0, d)), q_dc, wavelength_a=None,
                             compton=False).crystal
        t_ours = time.perf_counter() - t0
        a = np.asarray(iq_dc, dtype=float) / np.mean(iq_dc)
        b = ours / np.mean(ours)
        print(f"{d:>9.1f} nm {cluster.n_atoms:>8} {t_dc:>11.2f} {t_ours:>7.2f} {t_dc / t_ours:>8.0f} {np.max(np.abs(a - b) / b):>10.2e}")
    print("(shape diff: max relative difference after scaling both to mean 1; the form-factor tables differ by ~1-3 %)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-library", action="store_true", help="skip the library timings (the longest part, ~1.5 min)")
    p.add_argument("--skip-debyecalculator", action="store_true", help="skip the DebyeCalculator comparison")
    p.add_argument("--debyecalculator-max-nm", type=float, default=10.0,
                   help="largest sphere given to DebyeCalculator (20 nm takes about a minute; default 10)")
    args = p.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} cores")
    single_cluster()
    scaling_with_size()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_library:
            scaling_with_patterns(Path(tmp))
            full_library(Path(tmp))
    if not args.skip_debyecalculator:
        debyecalculator(args.debyecalculator_max_nm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
