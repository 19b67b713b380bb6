"""Issue 18, size targets: where do the size-class errors of a metal-shape-size bundle come from?

    python experiments/size18/diagnose.py [BUNDLE] [--n 4096] [--json OUT.json]

Draws held-out sets exactly as ``benchmarks/bench_cluster_model.py`` does (``draw_evaluation_set``: ``part="test"``
clusters, the bundle's augmentation with the mask mode and dispersion fixed), keeps per row what was drawn (family,
cluster, strain, smearing, SAXS end, counting level) and the calibrated answer of the bundle (mean and 1-sigma of
ln D_N as ``ClusterPredictor.predict_standardized`` computes them, size-class probabilities), and prints:

1. SAXS alone and SAXS + WAXS, monodisperse: accuracy, the accuracy the error distribution alone implies for a
   0.5 nm class (rows' mean of min(|err|, w) / w is the miss rate of a uniform position in a class of width w), bias
   and scatter per family, per 1 nm size bin, per SAXS end and per smearing; the held-out clusters of the sparse
   families and their distance to a class boundary;
2. the size-class probabilities: argmax of the Gaussian mass vs the class of the point estimate, ECE per condition,
   mean confidence vs accuracy, and the ECE an oracle width factor per condition would give (is it the width?);
3. polydisperse populations: the class of D_N against the class of D_V and the error of each.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from qdots_bluesky.models.bundle import shipped_bundle_path
from qdots_bluesky.models.calibration import expected_calibration_error
from qdots_bluesky.models.cluster_engine import cluster_continuous_estimates
from qdots_bluesky.models.continuous import calibrated_std, class_probabilities, widened_std
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.sim.learning.cluster_evaluation import SIZE_CLASSES_NM, EvaluationCondition, size_class_labels
from qdots_bluesky.sim.learning.cluster_training import load_cluster_bases
from qdots_bluesky.sim.learning.metal_augment import MASK_MODES, MetalAugmenter
from qdots_bluesky.sim.learning.metal_sources import MetalSource, population_bases

ROOT = Path(__file__).resolve().parents[2]
W = 0.5  # class width, nm
#: Families with few clusters in 1-10 nm (19, 19, 32): 4-7 held out (every 5th by size).
SPARSE = ("icosahedron", "cuboctahedron", "octahedron")
SERIES = True  # polydisperse populations of the sparse families from their whole series, as the benchmark now draws


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_cluster_model", ROOT / "benchmarks" / "bench_cluster_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def draw(bases, settings, cond: EvaluationCondition, n: int, seed: int):
    """draw_evaluation_set with what was drawn kept: (x, targets, pops, augmentation parameters, bases drawn from)."""
    from dataclasses import replace
    ranges = settings.ranges
    disp = ranges.dispersion if cond.dispersion is None else (cond.dispersion,) * 2
    ranges = replace(ranges, dispersion=disp, mixture_share=0.0)
    aug = MetalAugmenter(bases[0].q, settings=cond.augment_settings(settings.augment))
    drawn = population_bases(bases, "test", settings.test_every, polydisperse=SERIES and cond.dispersion != 0.0)
    src = MetalSource(drawn, aug, n, ranges, part="all", test_every=settings.test_every)
    rng = np.random.default_rng(seed)
    patterns, targets, pops = src.populations(rng)
    x, meta = src.augmenter.with_patterns(patterns).sample(np.arange(n), rng)
    return x, targets, pops, meta, src.bases


def answers(predictor, x):
    """Calibrated mean and 1-sigma of the continuous outputs (as the ClusterPredictor), size-class probabilities."""
    out = predictor.raw_outputs(x)
    mu, sd = cluster_continuous_estimates(out["continuous"], predictor.contents.config)
    sd = calibrated_std(sd, predictor.interval)
    sd = widened_std(sd, mu[:, 2], predictor.dispersion_slope)
    return mu, sd, class_probabilities(mu[:, 0], sd[:, 0], SIZE_CLASSES_NM)


def boundary_distance(d):
    """Distance (nm) of a diameter to the nearest class boundary (midpoints of the 0.5 nm classes)."""
    edges = 0.5 * (SIZE_CLASSES_NM[1:] + SIZE_CLASSES_NM[:-1])
    return np.min(np.abs(np.asarray(d)[:, None] - edges[None, :]), axis=1)


def line(name, err, hit, extra=""):
    return (f"{name:>26} {err.size:>5} acc {np.mean(hit):.3f}  implied {1 - np.mean(np.minimum(np.abs(err), W) / W):.3f}"
            f"  bias {np.mean(err):+.4f}  sd {np.std(err):.4f}  MAE {np.mean(np.abs(err)):.4f} nm  "
            f"rel MAE {extra}")


def breakdown(title, d, err, hit, groups: dict[str, np.ndarray]):
    print(f"\n-- {title}: by {', '.join(groups)} --")
    print(line("all", err, hit, f"{np.mean(np.abs(err) / d) * 100:.2f} %"))
    rows = {}
    for gname, labels in groups.items():
        for lab in dict.fromkeys(labels.tolist()):
            sel = labels == lab
            if sel.sum() >= 20:
                print(line(f"{gname} {lab}", err[sel], hit[sel], f"{np.mean(np.abs(err[sel]) / d[sel]) * 100:.2f} %"))
                rows[f"{gname} {lab}"] = {"n": int(sel.sum()), "acc": float(np.mean(hit[sel])),
                                          "bias_nm": float(np.mean(err[sel])), "sd_nm": float(np.std(err[sel])),
                                          "mae_nm": float(np.mean(np.abs(err[sel])))}
    return rows


def oracle_width_ece(mu, sd, d, factors=np.geomspace(0.3, 4.0, 41)):
    """The width factor (one per set) with the least ECE of the size classes, and that ECE."""
    labels = size_class_labels(d)
    eces = [expected_calibration_error(class_probabilities(mu, f * sd, SIZE_CLASSES_NM), labels, 15) for f in factors]
    k = int(np.argmin(eces))
    return float(factors[k]), float(eces[k])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--n", type=int, default=4096, help="populations of the monodisperse SAXS / both sets")
    ap.add_argument("--n-other", type=int, default=1024, help="populations of every other condition")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--skip-mono", action="store_true", help="leave out part 1")
    ap.add_argument("--held-out-populations", action="store_true", help="polydisperse populations of held-out "
                    "clusters only (the benchmark's sets before this work)")
    args = ap.parse_args()
    global SERIES
    SERIES = not args.held_out_populations
    path = Path(args.bundle) if args.bundle else shipped_bundle_path("metal-shape-size")
    predictor = Predictor.from_bundle(path, device="cpu")
    settings = bench_module().bundle_settings(predictor)
    q, bases = load_cluster_bases(settings)
    families = list(settings.families)
    report: dict = {"bundle": str(path)}
    print(f"{path}\nclasses: 0.5 nm of D_N; 'implied': 1 - mean(min(|err|, 0.5) / 0.5), the accuracy a uniform "
          "position in a class and this error distribution give")

    # 1. monodisperse, SAXS alone and SAXS + WAXS
    for mode in () if args.skip_mono else ("saxs", "both"):
        x, t, pops, meta, test_bases = draw(bases, settings, EvaluationCondition(mode, 0.0), args.n, args.seed)
        mu, sd, p = answers(predictor, x)
        d = t["diameter_nm"].astype(float)
        est = np.exp(mu[:, 0])
        err = est - d
        true_c = size_class_labels(d)
        hit = p.argmax(1) == true_c
        fam = np.array([families[i] for i in pops["family"][:, 0]])
        size_bin = np.array([f"{int(v)}-{int(v) + 1} nm" for v in np.clip(d, 1, 9.999)])
        end = np.array([f"SAXS end {lo:.1f}-{lo + 0.1:.1f}" for lo in np.floor(meta["saxs_end_q"] * 10) / 10]) \
            if mode == "saxs" else np.array(["-"] * d.size)
        smear = np.array([f"smear {s:.4f}" for s in meta["smearing_sigma_q"]])
        smear_bin = np.where(meta["smearing_sigma_q"] < 0.0025, "sigma_Q < 0.0025",
                             np.where(meta["smearing_sigma_q"] < 0.005, "sigma_Q 0.0025-0.005", "sigma_Q >= 0.005"))
        counts = np.where(meta["counts_per_point"] < 1e3, "counts < 1e3", "counts >= 1e3")
        groups = {"family": fam, "size": size_bin, "smearing": smear_bin, "counts": counts}
        if mode == "saxs":
            groups["end"] = end
        title = f"{mode}, monodisperse, n = {d.size}"
        rows = breakdown(title, d, err, hit, groups)
        point_class = size_class_labels(est)
        bd = boundary_distance(d)
        print(f"class of the point estimate exp(mu): acc {np.mean(point_class == true_c):.3f} (argmax of the "
              f"Gaussian mass {np.mean(hit):.3f}; they differ on {np.mean(point_class != p.argmax(1)):.3f})")
        for lo, hi in ((0, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 0.26)):
            sel = (bd >= lo) & (bd < hi)
            print(f"   true D {lo:.2f}-{hi:.2f} nm from a class boundary: {sel.mean():.3f} of rows, acc "
                  f"{np.mean(hit[sel]):.3f}")
        # per-family bias removed (an oracle that knows the family's mean relative error): bias or scatter?
        rel = err / d
        debiased = est - d * np.array([rel[fam == f].mean() for f in fam])
        print(f"oracle: remove each family's mean relative error -> acc {np.mean(size_class_labels(debiased) == true_c):.3f};"
              f" remove each (family, 1 nm bin)'s -> ", end="")
        key = np.char.add(fam.astype(str), size_bin)
        debiased2 = est - d * np.array([rel[key == k].mean() for k in key])
        print(f"{np.mean(size_class_labels(debiased2) == true_c):.3f}")
        # distinct held-out clusters of the sparse families: where they sit against the class boundaries
        sparse_rows = {}
        for f in ("icosahedron", "cuboctahedron", "octahedron"):
            if f not in families:
                continue
            b = test_bases[families.index(f)]
            cluster = np.abs(d[fam == f][:, None] / (1 + t["strain"][fam == f][:, None]) - b.diameter_nm[None, :]).argmin(1)
            hits = hit[fam == f]
            desc = []
            for k in np.unique(cluster):
                s = cluster == k
                desc.append(f"{b.diameter_nm[k]:.2f} nm (boundary {boundary_distance(b.diameter_nm[k:k + 1])[0]:.2f}) "
                            f"acc {hits[s].mean():.2f} n {s.sum()}")
            print(f"   held-out {f}: " + "; ".join(desc))
            sparse_rows[f] = desc
        dec = fam == "decahedron"
        if dec.any():
            b = test_bases[families.index("decahedron")]
            cl = np.abs(d[dec][:, None] / (1 + t["strain"][dec][:, None]) - b.diameter_nm[None, :]).argmin(1)
            aspect = np.array([b.params[k][1] / b.params[k][0] for k in cl])
            for name, sel in (("q/p <= 0.4 (short)", aspect <= 0.4), ("0.4-0.75", (aspect > 0.4) & (aspect <= 0.75)),
                              ("> 0.75 (long)", aspect > 0.75)):
                if sel.sum() >= 10:
                    e = err[dec][sel]
                    print(f"   decahedra {name}: n {sel.sum()} acc {hit[dec][sel].mean():.3f} bias {np.mean(e / d[dec][sel]) * 100:+.2f} % "
                          f"MAE {np.mean(np.abs(e)):.4f} nm")
        cov = np.abs(np.log(d) - mu[:, 0]) <= sd[:, 0]
        cov95 = np.abs(np.log(d) - mu[:, 0]) <= 1.96 * sd[:, 0]
        z = (np.log(d) - mu[:, 0]) / sd[:, 0]
        print(f"z of ln D_N: 68 % interval covers {cov.mean():.3f}, 95 % {cov95.mean():.3f}; |z| quantiles 50/90/99 % "
              f"{np.quantile(np.abs(z), [0.5, 0.9, 0.99]).round(2).tolist()} (Gaussian 0.67/1.64/2.58)")
        report[f"{mode}, disp 0"] = {"acc": float(np.mean(hit)), "mae_nm": float(np.mean(np.abs(err))),
                                     "implied": float(1 - np.mean(np.minimum(np.abs(err), W) / W)),
                                     "groups": rows, "sparse_clusters": sparse_rows,
                                     "coverage68": float(cov.mean()), "coverage95": float(cov95.mean())}

    # 2 and 3. every condition: ECE of the size classes, oracle width, D_N vs D_V classes
    print("\n-- size-class probabilities per condition (n = %d each) --" % args.n_other)
    print(f"{'condition':>16} {'acc DN':>7} {'conf':>6} {'ECE':>6} {'oracle f':>8} {'ECE(f)':>7} {'cov68':>6} "
          f"{'acc DV':>7} {'MAE DN':>7} {'MAE DV':>7} {'rel DN':>7} {'rel DV':>7} {'disp err':>8}")
    all_mu, all_sd, all_d, all_fam, all_poly, per = [], [], [], [], [], {}
    for i, cond in enumerate([EvaluationCondition(m, dd) for m in MASK_MODES for dd in (0.0, 0.1, 0.2, 0.3)]):
        x, t, pops, meta, _ = draw(bases, settings, cond, args.n_other, args.seed + 100 + i)
        mu, sd, p = answers(predictor, x)
        d, dv = t["diameter_nm"].astype(float), t["volume_diameter_nm"].astype(float)
        lab = size_class_labels(d)
        ece = expected_calibration_error(p, lab, 15)
        f, ece_f = oracle_width_ece(mu[:, 0], sd[:, 0], d)
        p_v = class_probabilities(mu[:, 1], sd[:, 1], SIZE_CLASSES_NM)
        row = {"acc_dn": float(np.mean(p.argmax(1) == lab)), "confidence": float(p.max(1).mean()), "ece": ece,
               "oracle_factor": f, "ece_oracle": ece_f,
               "coverage68": float(np.mean(np.abs(np.log(d) - mu[:, 0]) <= sd[:, 0])),
               "acc_dv": float(np.mean(p_v.argmax(1) == size_class_labels(dv))),
               "mae_dn": float(np.mean(np.abs(np.exp(mu[:, 0]) - d))), "mae_dv": float(np.mean(np.abs(np.exp(mu[:, 1]) - dv))),
               "rel_dn": float(np.mean(np.abs(np.exp(mu[:, 0]) / d - 1))), "rel_dv": float(np.mean(np.abs(np.exp(mu[:, 1]) / dv - 1))),
               "mae_dispersion": float(np.mean(np.abs(mu[:, 2] - t["dispersion"])))}
        per[cond.name] = row
        print(f"{cond.name:>16} {row['acc_dn']:>7.3f} {row['confidence']:>6.3f} {ece:>6.3f} {f:>8.2f} {ece_f:>7.3f} "
              f"{row['coverage68']:>6.3f} {row['acc_dv']:>7.3f} {row['mae_dn']:>7.3f} {row['mae_dv']:>7.3f} "
              f"{row['rel_dn'] * 100:>6.2f}% {row['rel_dv'] * 100:>6.2f}% {row['mae_dispersion']:>8.3f}")
        all_mu.append(mu[:, 0]), all_sd.append(sd[:, 0]), all_d.append(d)
        all_fam.append(np.array([families[j] for j in pops["family"][:, 0]]))
        all_poly.append(np.full(d.size, cond.dispersion > 0))
        per[cond.name]["by_family"] = {f: {"acc_dn": float(np.mean(p[s].argmax(1) == lab[s])),
                                           "confidence": float(p[s].max(1).mean()),
                                           "rel_dn_bias": float(np.mean(np.exp(mu[s, 0]) / d[s] - 1)),
                                           "rel_dv_bias": float(np.mean(np.exp(mu[s, 1]) / dv[s] - 1)),
                                           "true_dispersion": float(t["dispersion"][s].mean()),
                                           "estimated_dispersion": float(mu[s, 2].mean())}
                                       for f in families if (s := pops["family"][:, 0] == families.index(f)).sum()}
        per[cond.name]["_f"] = f
    mu, sd, d = (np.concatenate(v) for v in (all_mu, all_sd, all_d))
    lab = size_class_labels(d)
    pooled = expected_calibration_error(class_probabilities(mu, sd, SIZE_CLASSES_NM), lab, 15)
    f_each = np.concatenate([np.full(args.n_other, per[k].pop("_f")) for k in per])
    pooled_oracle = expected_calibration_error(class_probabilities(mu, f_each * sd, SIZE_CLASSES_NM), lab, 15)
    f1, pooled_one = oracle_width_ece(mu, sd, d)
    print(f"pooled ECE {pooled:.5f}; one oracle width factor for all ({f1:.2f}) {pooled_one:.5f}; an oracle factor "
          f"per condition {pooled_oracle:.5f}")
    fam, poly = np.concatenate(all_fam), np.concatenate(all_poly)
    sparse = np.isin(fam, SPARSE)
    p_all = class_probabilities(mu, sd, SIZE_CLASSES_NM)
    subsets = {"monodisperse conditions only": ~poly, "dense families only (all conditions)": ~sparse,
               "all but sparse-family polydisperse rows": ~(sparse & poly),
               "sparse-family polydisperse rows": sparse & poly}
    print(f"sparse families ({', '.join(SPARSE)}): their held-out part holds 4-7 clusters 1.4-2.4 nm apart, so a "
          "'polydisperse' held-out population of them is a 1-3 cluster histogram, not a log-normal")
    report["pooled_ece_subsets"] = {}
    for name, sel in subsets.items():
        e = expected_calibration_error(p_all[sel], lab[sel], 15)
        acc = float(np.mean(p_all[sel].argmax(1) == lab[sel]))
        print(f"   pooled ECE, {name}: {e:.4f} (n {sel.sum()}, acc {acc:.3f}, confidence {p_all[sel].max(1).mean():.3f})")
        report["pooled_ece_subsets"][name] = {"ece": e, "n": int(sel.sum()), "acc": acc}
    report |= {"conditions": per, "pooled_ece": pooled, "pooled_ece_one_factor": pooled_one, "one_factor": f1,
               "pooled_ece_factor_per_condition": pooled_oracle}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
