"""Metal nanoclusters (issue 18): how well a shape + size bundle answers, through the Predictor users run.

    python benchmarks/bench_cluster_model.py                               # the shipped metal-shape-size bundle
    python benchmarks/bench_cluster_model.py run1.safetensors --out evaluation_cluster --per-condition 512
    python benchmarks/bench_cluster_model.py run1.safetensors --debyecalculator-python /path/to/venv/bin/python

1. Held-out simulations (``part="test"`` clusters: never trained; except polydisperse populations, 0.1 wide or
   more, of the icosahedra, cuboctahedra and octahedra, of which only 4-7 are held out: from their whole series, ~3/4
   of their number weight on trained clusters; ``--held-out-populations``: held-out clusters only); single families; strain
   +-1 %; the bundle's own augmentation with the mask mode and dispersion fixed; seeds from --seed): the issue's
   targets, one line each, then a table per condition (mask mode both / saxs / waxs / gap x dispersion 0 / 0.1 /
   0.2 / 0.3).
2. The report in --out: report.json (every figure) and PNG figures: confusion matrices of the 6 families and of the
   3 structures per 1 nm size bin (WAXS only and both), size errors per shape, robustness curves (shape and size
   class vs counts per point, vs dispersion, vs Q range).
3. With DebyeCalculator (importable, or --debyecalculator-python of a venv that has it): clusters built directly with
   ASE (held-out members of the training series and clusters outside it), I(Q) from DebyeCalculator and from this
   package on the model's Q grid, the same augmentation with the same seeds on both, the same model's answers.

Every answer comes from ``Predictor.from_bundle(...).predict_standardized`` (calibrated probabilities, sizes of
sized answers, flags): the figures are what a user gets, not the raw network's.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from qdots_bluesky.cluster_predictor import ClusterPredictor
from qdots_bluesky.models.bundle import shipped_bundle_path
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.saxs_waxs_input import network_input
from qdots_bluesky.sim.learning.cluster_evaluation import (STRUCTURE_GROUPS, EvaluationCondition, draw_evaluation_set,
                                                           estimate_arrays, estimate_metrics, size_class_labels,
                                                           structure_group_matrix)
from qdots_bluesky.sim.learning.cluster_training import ClusterTrainingSettings, load_cluster_bases
from qdots_bluesky.sim.learning.metal_augment import MASK_MODES, MetalAugmenter, MetalAugmentSettings
from qdots_bluesky.sim.learning.metal_sources import MetalPopulationRanges

DISPERSIONS = (0.0, 0.1, 0.2, 0.3)
COUNTS = (10.0, 30.0, 100.0, 300.0, 1e3, 1e4, 1e5)
SAXS_ENDS = (0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
WAXS_STARTS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
HELD_OUT_POPULATIONS = False  # --held-out-populations: polydisperse sets of held-out clusters only (before issue 18's
# size work: for icosahedra, cuboctahedra, octahedra histograms of 1-3 clusters, see experiments/size18/README.md)


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def bundle_settings(predictor: ClusterPredictor) -> ClusterTrainingSettings:
    """The training settings a bundle records (its task's material, grid and families where it records none)."""
    training = predictor.metadata.get("training") or {}
    spec, task = predictor.task.input, predictor.task
    s = ClusterTrainingSettings(element=task.material, families=tuple(task.classes[0].labels), q_min=spec.q_min,
                                q_max=spec.q_max, n_points=int(spec.n_points))
    fields = {k: training[k] for k in ("d_min_nm", "d_max_nm", "test_every", "seed") if k in training}
    if "augment" in training:
        fields["augment"] = MetalAugmentSettings(**_tuples(training["augment"]))
    if "ranges" in training:
        fields["ranges"] = MetalPopulationRanges(**_tuples(training["ranges"]))
    return replace(s, **fields)


def evaluate(predictor, bases, settings, cond: EvaluationCondition, n: int, seed: int):
    """Arrays of the answers, the targets and the figures of one held-out set."""
    data = draw_evaluation_set(bases, cond, n, seed, settings.augment, settings.ranges, test_every=settings.test_every,
                               populations_of_series=not HELD_OUT_POPULATIONS)
    arrays = estimate_arrays(predictor.predict_standardized(data.x), settings.families)
    return arrays, data.targets, estimate_metrics(arrays, data.targets, settings.families)


def pooled(parts: list) -> tuple[dict, dict]:
    """Concatenate (arrays, targets) of several sets with the same flags."""
    names = sorted({str(f) for a, _ in parts for f in a["flag_names"]})
    arrays: dict = {}
    for a, _ in parts:
        own = {str(f): j for j, f in enumerate(a["flag_names"])}
        flags = np.zeros((a["flags"].shape[0], len(names)), dtype=bool)
        for j, f in enumerate(names):
            if f in own:
                flags[:, j] = a["flags"][:, own[f]]
        for k, v in (a | {"flags": flags}).items():
            if k not in ("size_classes_nm", "flag_names"):
                arrays.setdefault(k, []).append(v)
    arrays = {k: np.concatenate(v) for k, v in arrays.items()}
    arrays |= {"size_classes_nm": parts[0][0]["size_classes_nm"], "flag_names": np.array(names, dtype=object)}
    targets = {k: np.concatenate([t[k] for _, t in parts]) for k in parts[0][1]}
    return arrays, targets


def target_lines(m: dict, pool: dict) -> list[dict]:
    rows = [("shape (3 structures) from WAXS alone, monodisperse", m["waxs, disp 0"]["acc3"], ">=", 0.97),
            ("0.5 nm size class from SAXS alone, monodisperse", m["saxs, disp 0"]["size_class_acc"], ">=", 0.98),
            ("0.5 nm size class from SAXS + WAXS, monodisperse", m["both, disp 0"]["size_class_acc"], ">=", 0.99),
            ("shape (3 structures) at 20 % polydispersity (SAXS + WAXS)", m["both, disp 0.2"]["acc3"], ">=", 0.90),
            ("ECE of the 3 structures (all 16 conditions pooled)", pool["ece3"], "<=", 0.03),
            ("ECE of the 0.5 nm size classes (all 16 conditions pooled)", pool["ece_size"], "<=", 0.03)]
    return [{"target": t, "reached": float(v), "goal": f"{op} {g:g}",
             "met": bool(v >= g if op == ">=" else v <= g)} for t, v, op, g in rows]


def print_table(title: str, metrics: dict) -> None:
    print(f"\n{title}")
    print(f"{'condition':>22} {'n':>5} {'acc3':>6} {'acc6':>6} {'size':>6} {'+-1':>6} {'MAE DN':>7} {'MAE DV':>7} "
          f"{'ECE3':>6} {'ECEsz':>6} {'cov68':>6} {'cov95':>6} {'flag':>6} {'sized':>6}")
    for name, m in metrics.items():
        print(f"{name:>22} {m['n']:>5} {m['acc3']:>6.3f} {m['acc6']:>6.3f} {m['size_class_acc']:>6.3f} "
              f"{m['size_class_acc_pm1']:>6.3f} {m['mae_dn_nm']:>7.3f} {m['mae_dv_nm']:>7.3f} {m['ece3']:>6.3f} "
              f"{m['ece_size']:>6.3f} {m['coverage_dn']['68']:>6.3f} {m['coverage_dn']['95']:>6.3f} "
              f"{m['flagged']:>6.3f} {m['sized']:>6.3f}")


def figures(out: Path, families, table: dict, parts: dict, robust: dict) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdots_bluesky.sim.learning.cluster_evaluation import confusion_by_size
    written = []
    g = structure_group_matrix(families)
    short = [f[:5] for f in families]
    for kind, labels in (("families", short), ("structures", [s[:5] for s in STRUCTURE_GROUPS])):
        fig, axes = plt.subplots(2, 9, figsize=(22, 5.6), constrained_layout=True)
        for r, mode in enumerate(("waxs", "both")):
            a, t = pooled([parts[f"{mode}, disp {d:g}"] for d in DISPERSIONS])
            p, tp = a["family_probabilities"], t["family_probabilities"]
            if kind == "structures":
                p, tp = p @ g, tp @ g
            conf = confusion_by_size(tp.argmax(1), p.argmax(1), t["diameter_nm"], len(labels))
            for b in range(9):
                ax = axes[r, b]
                c = conf[b].astype(float)
                norm = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
                ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
                for i in range(len(labels)):
                    for j in range(len(labels)):
                        if c[i, j]:
                            ax.text(j, i, int(c[i, j]), ha="center", va="center", fontsize=6,
                                    color="white" if norm[i, j] > 0.6 else "black")
                ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
                ax.set_yticks(range(len(labels)), labels if b == 0 else [], fontsize=6)
                ax.set_title(f"{mode}, {b + 1}-{b + 2} nm", fontsize=8)
        fig.suptitle(f"confusion of the {kind} per 1 nm bin of D_N (rows true, columns predicted; counts, colour: "
                     "row share; dispersions 0-0.3 pooled)")
        written.append(str(out / f"confusion_{kind}.png"))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True)
    width = 0.8 / len(MASK_MODES)
    for ax, key, label in zip(axes, ("mae_dn_nm_by_family", "mae_dv_nm_by_family"), ("D_N", "D_V")):
        for k, mode in enumerate(MASK_MODES):
            a, t = pooled([parts[f"{mode}, disp {d:g}"] for d in DISPERSIONS])
            m = estimate_metrics(a, t, families)
            ax.bar(np.arange(len(families)) + (k - 1.5) * width, [m[key][f] for f in families], width, label=mode)
        ax.set_xticks(range(len(families)), families, rotation=20, fontsize=8)
        ax.set_ylabel(f"MAE of {label} (nm)")
        ax.set_title(f"{label} error per true shape (dispersions 0-0.3 pooled, sized answers)", fontsize=10)
        ax.legend(fontsize=8)
    written.append(str(out / "size_errors_by_shape.png"))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(2, 4, figsize=(18, 7), constrained_layout=True)
    curves = [("counts per point (at the WAXS level)", COUNTS, {m: [robust["noise"][f"{m}, {c:g}"] for c in COUNTS]
                                                                for m in ("both", "saxs", "waxs")}, True),
              ("dispersion", DISPERSIONS, {m: [table[f"{m}, disp {d:g}"] for d in DISPERSIONS] for m in MASK_MODES},
               False),
              ("SAXS end Q (1/A), SAXS only", SAXS_ENDS, {"saxs": [robust["saxs_end"][f"{v:g}"] for v in SAXS_ENDS]},
               False),
              ("WAXS start Q (1/A), WAXS only", WAXS_STARTS, {"waxs": [robust["waxs_start"][f"{v:g}"]
                                                                      for v in WAXS_STARTS]}, False)]
    for c, (xlabel, xs, lines, logx) in enumerate(curves):
        for r, (key, ylabel) in enumerate((("acc3", "shape accuracy (3 structures)"),
                                           ("size_class_acc", "0.5 nm size-class accuracy"))):
            ax = axes[r, c]
            for mode, ms in lines.items():
                ax.plot(xs, [m[key] for m in ms], "o-", label=mode)
            ax.set_xscale("log" if logx else "linear")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("robustness on held-out clusters (monodisperse except the dispersion column)")
    written.append(str(out / "robustness.png"))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def held_out(args, predictor, bases, settings, out: Path) -> dict:
    families = list(settings.families)
    table, parts = {}, {}
    conds = [EvaluationCondition(m, d) for m in MASK_MODES for d in DISPERSIONS]
    for i, cond in enumerate(tqdm(conds, desc="held-out conditions")):
        a, t, m = evaluate(predictor, bases, settings, cond, args.per_condition, args.seed * 1000 + 100 + i)
        table[cond.name], parts[cond.name] = m, (a, t)
    pool = estimate_metrics(*pooled(list(parts.values())), families)
    n_rob = max(1, args.per_condition // 2)
    robust: dict = {"noise": {}, "saxs_end": {}, "waxs_start": {}}
    jobs = ([("noise", f"{m}, {c:g}", EvaluationCondition(m, 0.0, counts_per_point=c))
             for m in ("both", "saxs", "waxs") for c in COUNTS]
            + [("saxs_end", f"{v:g}", EvaluationCondition("saxs", 0.0, saxs_end_q=v)) for v in SAXS_ENDS]
            + [("waxs_start", f"{v:g}", EvaluationCondition("waxs", 0.0, waxs_start_q=v)) for v in WAXS_STARTS])
    for i, (group, key, cond) in enumerate(tqdm(jobs, desc="robustness sets")):
        robust[group][key] = evaluate(predictor, bases, settings, cond, n_rob, args.seed * 1000 + 500 + i)[2]
    targets = target_lines(table, pool)
    print("\n== the issue's targets on held-out simulations (part='test' clusters, augmented, fixed seeds; "
          + ("held-out clusters only" if args.held_out_populations else "polydisperse sparse families from their "
             "series: ~3/4 trained clusters") + ") ==")
    for t in targets:
        print(f"{t['target']:<60} {t['reached']:>7.4f} (goal {t['goal']:<7}) {'met' if t['met'] else 'MISSED'}")
    print_table("== per condition (acc3 / acc6: 3 structures / 6 families; size: 0.5 nm class of D_N, +-1 class; MAE "
                "in nm over sized answers; ECE3 / ECEsz: structures / size classes; cov68/95: D_N within its 68 / 95 % "
                "interval; flag: any flag but no_waxs; sized: status 'sized') ==", table)
    print_table(f"== robustness (monodisperse, {n_rob} per point): counting noise (counts per point at the WAXS level; "
                "training drew 30-1e5) ==", {f"noise {k}": v for k, v in robust["noise"].items()})
    print_table("== robustness: SAXS-only data up to Q (1/A; training drew 0.3-1.0) ==",
                {f"saxs end {k}": v for k, v in robust["saxs_end"].items()})
    print_table("== robustness: WAXS-only data from Q (1/A; training drew 0.5-2.0) ==",
                {f"waxs start {k}": v for k, v in robust["waxs_start"].items()})
    written = figures(out, families, table, parts, robust)
    print(f"figures: {', '.join(written)}")
    return {"targets": targets, "conditions": table, "pooled": pool, "robustness": robust, "figures": written,
            "per_condition": args.per_condition, "robustness_per_point": n_rob}


# ---- 3. DebyeCalculator on independently built clusters --------------------------------------------------------

DC_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import torch
    from debyecalculator import DebyeCalculator
    spec = np.load(sys.argv[1])
    q, n = spec["q"], int(spec["n"])
    torch.set_num_threads(int(spec["threads"]))
    calc = DebyeCalculator(qmin=float(q[0]), qmax=float(q[-1]) + 0.01, qstep=0.01, biso=0.0, device="cpu")
    calc.q = torch.tensor(q, dtype=calc.dtype).unsqueeze(-1)  # the model's log-spaced grid instead of its arange
    iqs, seconds = [], []
    for k in range(n):
        pos = spec[f"pos{k}"]
        t0 = time.perf_counter()
        qq, iq = calc.iq(([str(spec["element"])] * len(pos), pos))
        seconds.append(time.perf_counter() - t0)
        if not np.allclose(np.asarray(qq), q, rtol=1e-6):
            raise SystemExit("DebyeCalculator did not compute on the given Q grid")
        iqs.append(np.asarray(iq, dtype=np.float64))
        print(k, flush=True)
    from importlib.metadata import version
    np.savez(sys.argv[2], iq=np.array(iqs), seconds=np.array(seconds), version=np.array(version("debyecalculator")))
""")
#: DebyeCalculator 1.1.1's I(Q) is half of sum_ij f_i f_j sin(Q r_ij) / (Q r_ij) (measured: 0.4997 x this package's
#: f0-only pattern at Q < 0.3 1/A, where both form-factor tables give f = Z); its patterns are multiplied by this.
DC_SCALE = 2.0


def sphere_cut(element: str, a: float, diameter_nm: float, centre) -> "object":
    """Every atom of the fcc lattice (an atom at the origin) within diameter_nm of ``centre`` (fractions of a)."""
    from ase.build import bulk
    r = diameter_nm * 5.0
    n = int(np.ceil(r / a)) + 2
    atoms = bulk(element, "fcc", a=a, cubic=True).repeat((2 * n, 2 * n, 2 * n))
    atoms.positions -= n * a
    d = atoms.positions - np.asarray(centre, dtype=float) * a
    return atoms[np.einsum("ij,ij->i", d, d) <= r * r + 1e-9]


def ase_atoms(element: str, a: float, family: str, params: tuple):
    """A cluster built directly with ASE (centred on its mean position)."""
    from ase.cluster import Decahedron, FaceCenteredCubic, Icosahedron, Octahedron
    if family == "icosahedron":
        atoms = Icosahedron(element, params[0], latticeconstant=a)
    elif family == "decahedron":
        atoms = Decahedron(element, *params, latticeconstant=a)
    elif family in ("octahedron", "truncated_octahedron", "cuboctahedron"):
        atoms = Octahedron(element, params[0], params[1], latticeconstant=a)
    elif family == "sphere":
        atoms = sphere_cut(element, a, params[0], params[1] if len(params) > 1 else (0, 0, 0))
    elif family == "fcc_facets":
        atoms = FaceCenteredCubic(element, [(1, 0, 0), (1, 1, 0), (1, 1, 1)], list(params), latticeconstant=a)
    else:
        raise ValueError(family)
    atoms.positions -= atoms.get_positions().mean(axis=0)
    return atoms


def dc_cluster_set(settings, bases, a: float, d_max: float) -> list[dict]:
    """Held-out members of the training series (spread over sizes) and clusters outside it: other Marks decahedra,
    fcc clusters with (110) facets, spheres cut around an octahedral or tetrahedral interstitial site."""
    from qdots_bluesky.sim.learning.metal_sources import split_basis
    from qdots_bluesky.sim.physics.metal_clusters import equal_volume_diameter_nm
    chosen = []
    per_family = {"icosahedron": 4, "decahedron": 5, "octahedron": 3, "truncated_octahedron": 4, "cuboctahedron": 4,
                  "sphere": 4}
    for b in bases:
        test = split_basis(b, "test", settings.test_every)
        ok = np.flatnonzero(test.diameter_nm <= d_max)
        for i in ok[np.unique(np.linspace(0, ok.size - 1, min(per_family.get(b.family, 3), ok.size)).round().astype(int))]:
            chosen.append({"family": b.family, "params": tuple(test.params[i]), "set": "held-out",
                           "n_expected": int(test.n_atoms[i])})
    series = {b.family: {tuple(p) for p in b.params} for b in bases}
    new = [("decahedron", (p, max(1, round(f * p)), r)) for p, f, r in
           ((3, 0.75, 3), (4, 0.25, 1), (6, 0.75, 3), (7, 0.25, 3), (9, 0.75, 3), (11, 0.25, 2), (13, 0.75, 3),
            (15, 0.25, 3))]
    new = [c for c in new if c[1] not in series.get("decahedron", set())]
    new += [("fcc_facets", layers) for layers in ((3, 3, 3), (5, 4, 5), (8, 6, 7), (11, 9, 10), (15, 12, 14))]
    new += [("sphere", (d, c)) for d, c in ((1.9, (0.5, 0, 0)), (3.3, (0.25, 0.25, 0.25)), (4.6, (0.5, 0, 0)),
                                            (6.4, (0.25, 0.25, 0.25)), (8.7, (0.5, 0, 0)))]
    chosen += [{"family": f, "params": p, "set": "new"} for f, p in new]
    out = []
    for c in chosen:
        atoms = ase_atoms(settings.element, a, c["family"], c["params"])
        if "n_expected" in c and len(atoms) != c["n_expected"]:
            raise RuntimeError(f"{c}: ASE gives {len(atoms)} atoms, the basis {c['n_expected']}")
        d = float(equal_volume_diameter_nm(len(atoms), a))
        if 1.0 <= d <= d_max:
            label = f"{c['family']} " + ",".join(str(v) for v in c["params"][:1 if c["family"] == "sphere" else None])
            if c["family"] == "sphere":
                label += " nm cut" + {1: "", 2: " @oct site" if c["params"][-1] == (0.5, 0, 0) else " @tet site"}[
                    len(c["params"])]
            out.append(c | {"atoms": atoms, "diameter_nm": d, "label": label})
    return out


def our_pattern(element: str, a: float, c: dict, q: np.ndarray, wavelength: float | None):
    """This package's DSE (pair histogram of the same atoms: exact lattice path for fcc-lattice clusters, symmetry
    orbits for icosahedra and decahedra), coherent part with anomalous dispersion and the Compton part."""
    from qdots_bluesky.sim.physics.dse import debye_pattern
    from qdots_bluesky.sim.physics.metal_basis import metal_pair_histogram
    from qdots_bluesky.sim.physics.metal_clusters import MetalCluster, _lattice_form, fcc_structure
    family = c["family"] if c["family"] in ("icosahedron", "decahedron") else "sphere"  # any fcc-lattice family
    cluster = MetalCluster(element, family, tuple(c["params"]), 0.0, a, c["atoms"])
    if family == "sphere":
        lattice = _lattice_form(c["atoms"], fcc_structure(element, a), cluster.diameter_nm, c["label"])
        cluster = MetalCluster(element, family, tuple(c["params"]), 0.0, a, c["atoms"], lattice)
    p = debye_pattern(metal_pair_histogram(cluster, cache=False), q, wavelength, compton=wavelength is not None)
    return p.crystal, p.compton


def run_debyecalculator(python: str, element: str, q: np.ndarray, clusters: list[dict]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.npz"
        np.savez(spec, q=q, n=len(clusters), threads=os.cpu_count() or 1, element=np.array(element),
                 **{f"pos{k}": c["atoms"].get_positions() for k, c in enumerate(clusters)})
        (Path(tmp) / "dc.py").write_text(DC_SCRIPT)
        proc = subprocess.Popen([python, str(Path(tmp) / "dc.py"), str(spec), str(Path(tmp) / "out.npz")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in tqdm(proc.stdout, total=len(clusters), desc="DebyeCalculator I(Q)"):
            pass
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise RuntimeError(f"DebyeCalculator failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
        z = np.load(Path(tmp) / "out.npz")
        return {"iq": z["iq"], "seconds": z["seconds"], "version": str(z["version"])}


def dc_scores(a: dict, fam: np.ndarray, grp: np.ndarray, d: np.ndarray, sel: np.ndarray, g: np.ndarray) -> dict:
    p = a["family_probabilities"][sel]
    has = fam[sel] >= 0
    size = a["size_nm"][sel]
    sized = np.isfinite(size)
    classes = a["size_classes_nm"]
    return {"n": int(sel.sum()), "acc3": float(np.mean((p @ g).argmax(1) == grp[sel])),
            "acc6": float(np.mean(p[has].argmax(1) == fam[sel][has])) if has.any() else float("nan"),
            "size_class_acc": float(np.mean(a["size_probabilities"][sel].argmax(1)
                                            == size_class_labels(d[sel], classes))),
            "mae_dn_nm": float(np.mean(np.abs(size[sized] - d[sel][sized]))) if sized.any() else float("nan"),
            "sized": float(np.mean(sized))}


def debyecalculator_comparison(args, predictor, bases, settings) -> dict | None:
    python = args.debyecalculator_python
    if not python:
        if importlib.util.find_spec("debyecalculator") is not None:
            python = sys.executable
        else:
            print("\n(DebyeCalculator comparison skipped: debyecalculator is not importable; give "
                  "--debyecalculator-python of a venv that has it)")
            return None
    from qdots_bluesky.sim.physics.metal_clusters import fcc_lattice_parameter
    families = list(settings.families)
    q, wavelength = predictor.q, bases[0].wavelength_a
    a = fcc_lattice_parameter(settings.element)
    clusters = dc_cluster_set(settings, bases, a, args.dc_max_nm)
    t0 = time.perf_counter()
    dc = run_debyecalculator(python, settings.element, q, clusters)
    t_dc = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = [our_pattern(settings.element, a, c, q, wavelength) for c in tqdm(clusters, desc="our DSE")]
    t_ours = time.perf_counter() - t0
    clean_ours = np.stack([cr + co for cr, co in ours])
    clean_dc = DC_SCALE * dc["iq"] + np.stack([co for _, co in ours])
    g = structure_group_matrix(families)
    group_of = {f: int(g[i].argmax()) for i, f in enumerate(families)}
    fam = np.array([families.index(c["family"]) if c["family"] in families else -1 for c in clusters])
    grp = np.array([group_of.get(c["family"], STRUCTURE_GROUPS.index("fcc")) for c in clusters])
    d = np.array([c["diameter_nm"] for c in clusters])
    saxs, waxs = q < 0.3, q >= 1.0
    coherent_ratio = DC_SCALE * dc["iq"] / np.stack([cr for cr, _ in ours])
    results: dict = {"modes": {}, "clusters": []}
    per_mode = {}
    for k, mode in enumerate(("both", "saxs", "waxs")):
        aug = MetalAugmenter(q, settings=EvaluationCondition(mode, 0.0).augment_settings(settings.augment))
        rows = np.repeat(np.arange(len(clusters)), args.dc_repeats)
        seed = args.seed * 1000 + 900 + k
        p = aug.draw(rows.size, np.random.default_rng(seed))
        answers = {}
        for name, clean in (("ours", clean_ours), ("DebyeCalculator", clean_dc)):
            y, m = aug.augment(clean[rows], p, np.random.default_rng(seed + 50))  # same parameters, same noise seed
            answers[name] = estimate_arrays(predictor.predict_standardized(network_input(y, m)), families)
        per_mode[mode] = (rows, answers)
        results["modes"][mode] = {s: {name: dc_scores(ans, fam[rows], grp[rows], d[rows], sel, g)
                                      for name, ans in answers.items()}
                                  for s, sel in (("held-out", np.array([clusters[r]["set"] == "held-out" for r in rows])),
                                                 ("new", np.array([clusters[r]["set"] == "new" for r in rows])),
                                                 ("all", np.ones(rows.size, dtype=bool)))}
    print(f"\n== DebyeCalculator {dc['version']} vs this package: {len(clusters)} clusters built with ASE "
          f"({sum(c['set'] == 'held-out' for c in clusters)} held-out members of the training series, "
          f"{sum(c['set'] == 'new' for c in clusters)} outside it), one cluster per population (monodisperse) ==")
    print(f"I(Q) on the model's {q.size}-point grid {q[0]:g}-{q[-1]:g} 1/A: DebyeCalculator's coherent part (its f0 "
          f"table, no anomalous dispersion, B = 0) x {DC_SCALE:g} + this package's Compton part; ours: coherent part "
          f"with anomalous dispersion at {wavelength} A + the same Compton part. DebyeCalculator {t_dc:.1f} s, ours "
          f"{t_ours:.1f} s. Each cluster x {args.dc_repeats} augmentations per mask mode, the same drawn parameters and "
          "noise seed for both patterns.")
    rows, answers = per_mode["both"]
    print(f"{'cluster':>34} {'set':>8} {'atoms':>6} {'D nm':>5} {'SAXS r':>6} {'WAXS r':>6} | {'ours P':>6} "
          f"{'D est':>5} | {'DC P':>6} {'D est':>5}   (both; P: probability of the true structure, mean)")
    for i, c in enumerate(clusters):
        sel = rows == i
        line = []
        for name in ("ours", "DebyeCalculator"):
            ans = answers[name]
            line.append((float(np.mean((ans["family_probabilities"][sel] @ g)[:, grp[i]])),
                         float(np.nanmean(ans["size_nm"][sel])) if np.isfinite(ans["size_nm"][sel]).any() else np.nan))
        r = coherent_ratio[i]
        print(f"{c['label'][:34]:>34} {c['set']:>8} {len(c['atoms']):>6} {c['diameter_nm']:>5.2f} "
              f"{r[saxs].mean():>6.3f} {r[waxs].mean():>6.3f} | {line[0][0]:>6.3f} {line[0][1]:>5.2f} | "
              f"{line[1][0]:>6.3f} {line[1][1]:>5.2f}")
        results["clusters"].append({"label": c["label"], "set": c["set"], "atoms": len(c["atoms"]),
                                    "diameter_nm": c["diameter_nm"], "saxs_ratio": float(r[saxs].mean()),
                                    "waxs_ratio": float(r[waxs].mean()), "dc_seconds": float(dc["seconds"][i]),
                                    "both": {"ours": line[0], "DebyeCalculator": line[1]}})
    print("(SAXS r / WAXS r: mean of DebyeCalculator's coherent I(Q) x 2 over ours at Q < 0.3 and Q >= 1 1/A: "
          "the form-factor tables and ours' anomalous dispersion)")
    print(f"\n{'mode':>5} {'clusters':>9} {'source':>16} {'n':>5} {'acc3':>6} {'acc6':>6} {'size':>6} {'MAE DN':>7} "
          f"{'sized':>6}")
    for mode, by_set in results["modes"].items():
        for s, by_source in by_set.items():
            for name, m in by_source.items():
                print(f"{mode:>5} {s:>9} {name:>16} {m['n']:>5} {m['acc3']:>6.3f} {m['acc6']:>6.3f} "
                      f"{m['size_class_acc']:>6.3f} {m['mae_dn_nm']:>7.3f} {m['sized']:>6.3f}")
            o, t = by_source["ours"], by_source["DebyeCalculator"]
            print(f"{'':>5} {'':>9} {'difference':>16} {'':>5} {t['acc3'] - o['acc3']:>+6.3f} "
                  f"{t['acc6'] - o['acc6']:>+6.3f} {t['size_class_acc'] - o['size_class_acc']:>+6.3f} "
                  f"{t['mae_dn_nm'] - o['mae_dn_nm']:>+7.3f}")
    print("(acc6 over clusters with a family of the model: the (110)-faceted fcc clusters count for acc3 only)")
    results |= {"debyecalculator_version": dc["version"], "debyecalculator_seconds": t_dc, "ours_seconds": t_ours,
                "scale": DC_SCALE, "repeats": args.dc_repeats}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?", help="a metal-shape-size bundle (default: the shipped one)")
    parser.add_argument("--out", default="evaluation_cluster", help="folder of report.json and the figures")
    parser.add_argument("--per-condition", type=int, default=512, help="held-out populations per condition (default "
                        "512; the robustness sets take half)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every drawn set (default 0)")
    parser.add_argument("--device", default="auto", help="the Predictor's device (auto, cpu, cuda, numpy)")
    parser.add_argument("--debyecalculator-python", default=os.environ.get("QDOTS_DEBYECALCULATOR_PYTHON"),
                        help="python of a venv with debyecalculator (env QDOTS_DEBYECALCULATOR_PYTHON); default: "
                             "this python if it can import debyecalculator, else the comparison is skipped")
    parser.add_argument("--dc-repeats", type=int, default=16, help="augmentations per cluster and mask mode in the "
                        "DebyeCalculator comparison (default 16)")
    parser.add_argument("--dc-max-nm", type=float, default=10.0, help="largest cluster of the comparison, nm (default 10)")
    parser.add_argument("--skip-debyecalculator", action="store_true", help="leave out part 3")
    parser.add_argument("--held-out-populations", action="store_true", help="polydisperse populations of held-out "
                        "clusters only for every family (default: the sparse families' from their whole series)")
    args = parser.parse_args()
    global HELD_OUT_POPULATIONS
    HELD_OUT_POPULATIONS = args.held_out_populations
    if args.per_condition < 1 or args.dc_repeats < 1:
        parser.error("--per-condition and --dc-repeats: accepted: integers >= 1")
    t_start = time.perf_counter()
    path = Path(args.bundle) if args.bundle else shipped_bundle_path("metal-shape-size")
    if not path.is_file():
        print(f"no bundle at {path}: give a metal-shape-size bundle (qdots train --task metal-shape-size -o FILE)",
              file=sys.stderr)
        return 2
    predictor = Predictor.from_bundle(path, device=args.device)
    if not isinstance(predictor, ClusterPredictor):
        print(f"{path} is a {predictor.task.name if hasattr(predictor, 'task') else 'quantum-dot'} bundle; accepted: "
              "a SAXS + WAXS cluster bundle (task metal-shape-size)", file=sys.stderr)
        return 2
    settings = bundle_settings(predictor)
    print(f"{path} ({predictor.task.name}, {settings.element}, {predictor.q.size} Q points {predictor.q[0]:g}-"
          f"{predictor.q[-1]:g} 1/A) on {predictor.device}; {os.cpu_count()} CPU cores")
    q, bases = load_cluster_bases(settings, progress=True)
    if not np.allclose(q, predictor.q):
        print("the bundle's training grid differs from its task's grid", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = {"bundle": str(path), "device": predictor.device, "seed": args.seed,
              "held_out_populations": args.held_out_populations,
              "settings": settings.to_json(), "held_out": held_out(args, predictor, bases, settings, out)}
    report["held_out"]["seconds"] = time.perf_counter() - t0
    if not args.skip_debyecalculator:
        t0 = time.perf_counter()
        report["debyecalculator"] = debyecalculator_comparison(args, predictor, bases, settings)
        if report["debyecalculator"] is not None:
            report["debyecalculator"]["total_seconds"] = time.perf_counter() - t0
    report["seconds"] = time.perf_counter() - t_start
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    print(f"\nreport: {out / 'report.json'}; {report['seconds']:.0f} s in all (held-out part "
          f"{report['held_out']['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
