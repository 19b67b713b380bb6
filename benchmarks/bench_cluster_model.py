"""Train the metal-cluster network (issue 18) and report shape + size figures on held-out clusters.

Run: ``python benchmarks/bench_cluster_model.py [--minutes 22] [--out DIR] [--threads 1]``

Trains :func:`~qdots_bluesky.sim.learning.cluster_training.train_cluster_model` with the default settings (Au, the six
families over 1-10 nm, ``saxs_waxs_q(0.02, 15, 1024)``, 8192 fresh populations per epoch, at most ``--minutes`` of
training: the project's rule for shipped models is <= 25 minutes on the 2-core build machine), then prints one row per
held-out condition (mask mode x dispersion 0 / 0.2): shape accuracy over 6 families and 3 structure groups, their
top-1 ECE (temperature-scaled), the 0.5 nm size-class accuracy of the number-weighted mean diameter (and +-1 class),
the MAE of D_N and D_V (nm) and the coverage of the calibrated 68 % / 95 % intervals of ln D_N.

Issue 18's targets: shape (3 groups) from WAXS >= 97 %; size class from SAXS alone >= 98 % and from SAXS + WAXS
>= 99 % (monodisperse held-out clusters); shape at 20 % polydispersity >= 90 %; ECE <= 0.03.

With ``--out DIR`` the model state (``trained.pt``: config, state dict, calibration tensors, info), the calibration
tensors (``tensors.npz``), the weights as float16 (``weights_float16.npz``) and the metrics and history
(``metrics.json``) are written there. One thread for PyTorch is the default: the batch producer augments on a second
thread, and on a shared 2-core machine two PyTorch threads lose more to oversubscription than they gain.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=22.0, help="training time limit (minutes)")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="folder for the model state, tensors and metrics")
    args = ap.parse_args()

    import torch

    from qdots_bluesky.models.network import bundle_weights
    from qdots_bluesky.sim.learning.cluster_training import ClusterTrainingSettings, train_cluster_model

    settings = ClusterTrainingSettings(max_minutes=args.minutes, threads=args.threads, seed=args.seed)
    t0 = time.time()
    r = train_cluster_model(settings, progress=True)
    print(f"{r.info['parameters']} parameters; {r.metrics['epochs']} epochs, {r.metrics['train_seconds']:.0f} s of "
          f"training, {time.time() - t0:.0f} s in all; temperature {r.metrics['temperature_shape']:.3f}; "
          f"presence {r.metrics['presence']}")
    print("| input, dispersion | acc (6) | acc (3) | ECE (6) | ECE (3) | size class | +-1 class | MAE D_N nm | "
          "MAE D_V nm | cov 68 % | cov 95 % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in r.metrics["conditions"].items():
        print(f"| {name} | {m['acc6']:.3f} | {m['acc3']:.3f} | {m['ece6']:.3f} | {m['ece3']:.3f} | "
              f"{m['size_class_acc']:.3f} | {m['size_class_acc_pm1']:.3f} | {m['mae_dn_nm']:.3f} | {m['mae_dv_nm']:.3f} | "
              f"{m['coverage_log_dn']['68']:.3f} | {m['coverage_log_dn']['95']:.3f} |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save({"config": r.model.config, "state_dict": r.model.state_dict(), "tensors": r.tensors,
                    "info": r.info}, args.out / "trained.pt")
        np.savez(args.out / "tensors.npz", **r.tensors)
        np.savez(args.out / "weights_float16.npz",
                 **{k: v.astype(np.float16) for k, v in bundle_weights(r.model).items()})
        with open(args.out / "metrics.json", "w") as fh:
            json.dump({"metrics": r.metrics, "info": r.info, "history": r.history, "config": r.model.config}, fh,
                      indent=1)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
