"""Refit the calibration and held-out metrics of a trained metal-shape-size bundle with the package's current code.

    python experiments/size18/recalibrate.py IN.safetensors OUT.safetensors

The network's weights, its training history and provenance stay; the calibration tensors and ``metrics`` come from
:func:`~qdots_bluesky.sim.learning.cluster_training.calibrate_and_evaluate`, the same steps ``qdots train --task
metal-shape-size`` runs after its epochs (so OUT is what the command with this code gives for that network; the
train time and epochs of IN are kept). Used for issue 18's size targets: the calibration set's polydisperse rows of
the sparse families were histograms of 1-3 held-out clusters (experiments/size18/README.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

from qdots_bluesky.models.bundle import read_bundle, save_bundle
from qdots_bluesky.models.cluster_network import ClusterNet
from qdots_bluesky.models.network import load_weights
from qdots_bluesky.models.task import task_of
from qdots_bluesky.sim.learning.cluster_bundle import task_training_settings
from qdots_bluesky.sim.learning.cluster_training import calibrate_and_evaluate, load_cluster_bases


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    contents = read_bundle(src)
    meta = dict(contents.metadata)
    task = task_of(meta)
    model = load_weights(ClusterNet(contents.config), contents.weights).eval()
    training = meta.get("training", {})
    settings = task_training_settings(task, seed=int(training.get("seed", 0)))
    _, bases = load_cluster_bases(settings)
    tensors, metrics = calibrate_and_evaluate(model, bases, settings, progress=True)
    kept = {k: v for k, v in (meta.get("metrics") or {}).items() if k in ("train_seconds", "epochs", "total_seconds")}
    meta["metrics"] = metrics | kept
    meta = {k: v for k, v in meta.items() if k not in ("network", "created", "program_version", "format", "format_version")}
    save_bundle(dst, model, meta, tensors)
    print(f"{dst}: calibration refit ({', '.join(sorted(tensors))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
