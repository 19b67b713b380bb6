"""Metal nanoclusters (issue 18): time to build per-cluster SAXS + WAXS bases of the fcc families of one metal,
speed of the pair histograms (generic rows vs symmetry orbits), accuracy of the binned paths against the exact
DSE on small clusters, and DebyeCalculator (pip `debyecalculator`, CPU) on the same clusters and Q grid.

    python benchmarks/bench_metal_dse.py                       # Au, 1-5 nm, every family (~1-2 min on 2 cores)
    python benchmarks/bench_metal_dse.py --d-max 10 --skip histograms accuracy debyecalculator   # the 1-10 nm library
    python benchmarks/bench_metal_dse.py --d-max 10 --decahedra full --families decahedron   # all 885 decahedra
    python benchmarks/bench_metal_dse.py --debyecalculator-python /path/to/venv/bin/python

Times are wall-clock seconds on this machine; the histogram cache is off unless --cache is given (the bases then
go through a temporary cache, once cold and once warm).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from qdots_bluesky.sim.physics.cluster_symmetry import symmetry_orbits
from qdots_bluesky.sim.physics.dse import debye_pattern
from qdots_bluesky.sim.physics.form_factors import coherent_form_factor
from qdots_bluesky.sim.physics.metal_basis import build_metal_basis, metal_pair_histogram, saxs_waxs_q
from qdots_bluesky.sim.physics.metal_clusters import FAMILIES, build_metal_cluster, family_parameters
from qdots_bluesky.sim.physics.pair_histogram import atoms_pair_histogram


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def bases(args, q: np.ndarray) -> list:
    """Every family's basis twice: into an empty histogram cache (cold: clusters built, histograms computed) and
    from it (warm: histograms read, no cluster built); without --cache the cache is a temporary directory."""
    deca = "full (p, q, r) grid" if args.decahedra == "full" else "default q/p sampling"
    print(f"\n== per-cluster bases of {args.element}, {args.d_min}-{args.d_max} nm, {q.size} Q points "
          f"{q[0]:g}-{q[-1]:g} 1/A ({args.spacing}); decahedra: {deca} ==")
    print(f"{'family':>21} {'clusters':>8} {'atoms':>10} {'largest':>8} {'cold s':>7} {'warm s':>7} {'bound':>9}")
    options = {"max_reentrance": args.max_reentrance} | ({"q_over_p": None} if args.decahedra == "full" else {})
    totals, built = np.zeros(4), []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.cache:
            os.environ["QDOTS_CACHE_DIR"] = tmp
        for family in args.families:
            runs = [timed(build_metal_basis, args.element, family, q, args.d_min, args.d_max,
                          wavelength_a=args.wavelength, **options) for _ in range(2)]
            basis = runs[0][0]
            built.append(runs[1][0])
            row = np.array([len(basis.params), basis.n_atoms.sum(), runs[0][1], runs[1][1]])
            totals += row
            print(f"{family:>21} {row[0]:>8.0f} {row[1]:>10.0f} {int(basis.n_atoms.max()):>8} {row[2]:>7.1f} {row[3]:>7.1f} "
                  f"{basis.max_relative_pair_error():>9.1e}")
        if not args.cache:
            os.environ["QDOTS_CACHE_DIR"] = "off"
    print(f"{'all':>21} {totals[0]:>8.0f} {totals[1]:>10.0f} {'':>8} {totals[2]:>7.1f} {totals[3]:>7.1f}   "
          f"({totals[0] / totals[2]:.1f} clusters/s cold)")
    print("(bound: error of each pair's sinc term relative to its weight at the largest Q, (Q h)^2 / 24, h = 0.002 A; "
          "cold: clusters built and histograms computed into an empty cache; warm: the same basis from that cache)")
    return built


def source_speed(args, bases_built: list, q: np.ndarray) -> None:
    """Training data from the bases: one epoch of fresh populations (MetalSource) and augmented batches."""
    from qdots_bluesky.sim.learning.metal_augment import MetalAugmenter
    from qdots_bluesky.sim.learning.metal_sources import MetalSource
    if not bases_built:
        bases_built = [build_metal_basis(args.element, f, q, args.d_min, args.d_max, wavelength_a=args.wavelength)
                       for f in args.families]
    print(f"\n== training data: MetalSource over {len(bases_built)} families, {q.size} Q points ==")
    augmenter, t_aug = timed(MetalAugmenter, q)
    source = MetalSource(bases_built, augmenter, args.epoch_size)
    rng = np.random.default_rng(0)
    (epoch_aug, indices, _), t_epoch = timed(source, rng)
    print(f"augmenter set-up (solvent curves) {t_aug:.2f} s; one epoch of {args.epoch_size} populations {t_epoch:.2f} s "
          f"({args.epoch_size / t_epoch:.0f} populations/s)")
    epoch_aug.sample(indices[:args.batch_size], rng)  # smearing kernels built on first use
    t0 = time.perf_counter()
    for _ in range(4):
        epoch_aug.sample(rng.choice(indices, args.batch_size), rng)
    t = (time.perf_counter() - t0) / 4
    print(f"augmented batch of {args.batch_size}: {t:.2f} s ({args.batch_size / t:.0f} patterns/s)")


def histogram_speed(args) -> None:
    print("\n== pair histogram of one cluster: generic rows (N^2 / 2) vs symmetry orbits; lattice families exact ==")
    print(f"{'cluster':>28} {'atoms':>7} {'orbits':>7} {'generic s':>9} {'orbits s':>8} {'pattern diff':>12}")
    q = np.linspace(0.02, 15.0, 1000)
    for family, params in (("icosahedron", (args.generic_shells,)), ("decahedron", (9, 7, 2))):
        cluster = build_metal_cluster(args.element, family, params)
        generic, t_gen = timed(atoms_pair_histogram, cluster.atoms)
        labels, _ = symmetry_orbits(cluster.atoms, cluster.symmetry_candidates())
        reduced, t_orb = timed(metal_pair_histogram, cluster, cache=False)
        a, b = (debye_pattern(h, q, None, compton=False, precision="double").crystal for h in (generic, reduced))
        print(f"{cluster.label:>28} {cluster.n_atoms:>7} {labels.max() + 1:>7} {t_gen:>9.2f} {t_orb:>8.3f} "
              f"{np.max(np.abs(a - b) / a):>12.1e}")
    for family, params in (("icosahedron", (21,)), ("decahedron", (20, 12, 2)), ("truncated_octahedron", (37, 11))):
        cluster = build_metal_cluster(args.element, family, params)
        _, t = timed(metal_pair_histogram, cluster, cache=False)
        print(f"{cluster.label:>28} {cluster.n_atoms:>7} {'':>7} {'':>9} {t:>8.3f}   ({cluster.diameter_nm:.1f} nm)")


def exact_sinc_sum(atoms, q: np.ndarray) -> np.ndarray:
    p = atoms.get_positions()
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)[np.triu_indices(len(p), 1)]
    out = np.empty(q.size)
    for s in range(0, q.size, 64):
        x = np.outer(q[s:s + 64], d)
        out[s:s + 64] = 2.0 * (np.sin(x) / x).sum(axis=1)
    return out


def accuracy(args, q: np.ndarray) -> None:
    print(f"\n== binned paths vs the exact DSE (all pairs), {args.element} clusters of ~{args.accuracy_nm} nm ==")
    print(f"{'cluster':>28} {'atoms':>6} {'hist max rel':>12} {'basis max rel':>13} {'basis/bound':>11}")
    f2 = coherent_form_factor(args.element, q) ** 2
    for family in args.families:
        params = family_parameters(args.element, family, 0.5, args.accuracy_nm, max_reentrance=args.max_reentrance)[-1]
        cluster = build_metal_cluster(args.element, family, params)
        exact = f2 * (cluster.n_atoms + exact_sinc_sum(cluster.atoms, q))
        hist = debye_pattern(metal_pair_histogram(cluster, cache=False), q, None, compton=False).crystal
        d = cluster.diameter_nm
        basis = build_metal_basis(args.element, family, q, d - 1e-6, d + 1e-6, wavelength_a=None, compton=False,
                                  cache=False, max_reentrance=args.max_reentrance)
        row = basis.crystal[basis.params.index(cluster.params)]
        pair_weight = f2 * cluster.n_atoms * (cluster.n_atoms - 1)
        print(f"{cluster.label:>28} {cluster.n_atoms:>6} {np.max(np.abs(hist - exact) / exact):>12.1e} "
              f"{np.max(np.abs(row - exact) / exact):>13.1e} "
              f"{np.max(np.abs(row - exact) / pair_weight) / basis.max_relative_pair_error():>11.1e}")
    print("(max |I - I_exact| / I_exact over Q; basis/bound: largest error per unit pair weight over the stated bound)")


DC_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import torch
    from debyecalculator import DebyeCalculator
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec["threads"])
    calc = DebyeCalculator(qmin=spec["qmin"], qmax=spec["qmax"], qstep=spec["qstep"], biso=0.0, device="cpu")
    out = {}
    for name in spec["clusters"]:
        z = np.load(name)
        calc.iq((list(z["symbols"][:13]), z["positions"][:13]))  # warm-up
        t0 = time.perf_counter()
        q, iq = calc.iq((list(z["symbols"]), z["positions"]))
        out[name] = {"seconds": time.perf_counter() - t0, "q": np.asarray(q).tolist(), "iq": np.asarray(iq).tolist()}
    json.dump(out, open(sys.argv[2], "w"))
""")


def debyecalculator(args) -> None:
    print("\n== DebyeCalculator (CPU) vs this package, same clusters, same linear Q grid ==")
    python = args.debyecalculator_python
    try:
        import debyecalculator
        python = python or sys.executable
        del debyecalculator
    except ImportError:
        if not python:
            print("DebyeCalculator not installed (pip `debyecalculator`; or give --debyecalculator-python of a venv that has it)")
            return
    qstep = (args.q_max - args.dc_q_min) / (args.q_points - 1)
    clusters = [build_metal_cluster(args.element, f, p) for f, p in
                (("icosahedron", (7,)), ("decahedron", (6, 4, 1)), ("truncated_octahedron", (13, 4)),
                 ("icosahedron", (12,)), ("decahedron", (11, 8, 2)), ("truncated_octahedron", (22, 7)),
                 ("icosahedron", (21,)), ("decahedron", (20, 12, 2)), ("truncated_octahedron", (37, 11)))
                if build_metal_cluster(args.element, f, p).diameter_nm <= args.dc_max_nm]
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for k, c in enumerate(clusters):
            names.append(str(Path(tmp) / f"c{k}.npz"))
            np.savez(names[-1], symbols=np.array(c.atoms.get_chemical_symbols()), positions=c.atoms.get_positions())
        spec = {"qmin": args.dc_q_min, "qmax": args.q_max + qstep / 2, "qstep": qstep, "threads": os.cpu_count() or 1,
                "clusters": names}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        (Path(tmp) / "dc.py").write_text(DC_SCRIPT)
        run = subprocess.run([python, str(Path(tmp) / "dc.py"), str(Path(tmp) / "spec.json"), str(Path(tmp) / "out.json")],
                             capture_output=True, text=True)
        if run.returncode != 0:
            print("DebyeCalculator failed:", run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode)
            return
        results = json.loads((Path(tmp) / "out.json").read_text())
    rows, ratios = [], []
    for c, name in zip(clusters, names):
        r = results[name]
        q = np.asarray(r["q"])
        ours, t = timed(lambda: debye_pattern(metal_pair_histogram(c, cache=False), q, None, compton=False).crystal)
        theirs = np.asarray(r["iq"])
        saxs, waxs = q < 1.0, q >= 1.0
        diff = [np.max(np.abs(theirs[m] / theirs[m].mean() - ours[m] / ours[m].mean()) / (ours[m] / ours[m].mean()))
                for m in (saxs, waxs)]
        rows.append((c, r["seconds"], t, diff))
        ratios.append(theirs / ours / np.mean(theirs / ours))
    common = np.median(ratios, axis=0)  # the form-factor ratio (f_theirs / f_ours)^2, the same for every cluster
    print(f"{'cluster':>28} {'atoms':>6} {'D nm':>5} {'DebyeCalc s':>11} {'ours s':>7} {'SAXS diff':>9} {'WAXS diff':>9} "
          f"{'beyond f':>8}")
    for (c, t_dc, t, diff), ratio in zip(rows, ratios):
        print(f"{c.label:>28} {c.n_atoms:>6} {c.diameter_nm:>5.1f} {t_dc:>11.2f} {t:>7.2f} {diff[0]:>9.1e} {diff[1]:>9.1e} "
              f"{np.max(np.abs(ratio / common - 1)):>8.1e}")
    print(f"({q.size} Q points {q[0]:g}-{q[-1]:g} 1/A; ours: histogram from scratch + DSE, one cluster at a time; diff: max "
          "relative difference after scaling each range to mean 1; beyond f: max deviation of I_theirs / I_ours from the "
          "ratio shared by all clusters, i.e. what the different form-factor tables do not explain)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--element", default="Au", help="fcc metal (default Au)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES, help="families (default: all)")
    parser.add_argument("--d-min", type=float, default=1.0, help="smallest equal-volume diameter, nm (default 1)")
    parser.add_argument("--d-max", type=float, default=5.0, help="largest equal-volume diameter, nm (default 5; 10 for the full range)")
    parser.add_argument("--max-reentrance", type=int, default=2, help="largest Marks re-entrance r of the decahedra (default 2)")
    parser.add_argument("--decahedra", choices=("default", "full"), default="default",
                        help="decahedra of the bases: the default q/p sampling (q = p x 0, 1/2, 1) or the full q <= p grid")
    parser.add_argument("--q-min", type=float, default=0.02, help="smallest Q of the bases, 1/A (default 0.02)")
    parser.add_argument("--q-max", type=float, default=15.0, help="largest Q, 1/A (default 15)")
    parser.add_argument("--q-points", type=int, default=3000, help="number of Q points (default 3000)")
    parser.add_argument("--spacing", choices=("log", "linear"), default="log", help="Q spacing of the bases (default log)")
    parser.add_argument("--wavelength", type=float, default=0.56, help="wavelength for anomalous dispersion and Compton, A (default 0.56)")
    parser.add_argument("--cache", action="store_true", help="use the on-disk histogram cache (default: compute everything)")
    parser.add_argument("--generic-shells", type=int, default=12, help="icosahedron shells timed on the generic path (default 12, 5083 atoms)")
    parser.add_argument("--accuracy-nm", type=float, default=2.0, help="size of the clusters checked against the exact DSE, nm (default 2)")
    parser.add_argument("--epoch-size", type=int, default=4096, help="populations per epoch timed in the source part (default 4096)")
    parser.add_argument("--batch-size", type=int, default=256, help="augmented batch size timed (default 256)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("bases", "histograms", "accuracy", "debyecalculator", "source"),
                        help="parts to leave out")
    parser.add_argument("--debyecalculator-python", default=os.environ.get("QDOTS_DEBYECALCULATOR_PYTHON"),
                        help="python of a venv with debyecalculator when this one lacks it (env QDOTS_DEBYECALCULATOR_PYTHON)")
    parser.add_argument("--dc-q-min", type=float, default=0.02, help="smallest Q of the DebyeCalculator comparison, 1/A (default 0.02)")
    parser.add_argument("--dc-max-nm", type=float, default=10.0, help="largest cluster compared with DebyeCalculator, nm (default 10)")
    args = parser.parse_args()
    if not args.cache:
        os.environ["QDOTS_CACHE_DIR"] = "off"
    q = saxs_waxs_q(args.q_min, args.q_max, args.q_points, args.spacing)
    print(f"{os.cpu_count()} CPU cores; numpy {np.__version__}")
    if "histograms" not in args.skip:
        histogram_speed(args)
    built = bases(args, q) if "bases" not in args.skip else []
    if "source" not in args.skip:
        source_speed(args, built, q)
    if "accuracy" not in args.skip:
        accuracy(args, saxs_waxs_q(args.q_min, args.q_max, 1000, args.spacing))
    if "debyecalculator" not in args.skip:
        debyecalculator(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
