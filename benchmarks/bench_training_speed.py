"""Seconds per epoch of the shipped recipe's main network, with its batches augmented in a worker process or thread.

    python benchmarks/bench_training_speed.py [--library library_q.h5] [--epochs 5] [--rounds 2]
                                              [--workers process thread] [--noise-threads N] [--samples-per-epoch N]

Trains the main network of ``qdots train`` (the shipped settings, no coarse specialist) for ``--epochs`` epochs once
per batch worker and round, interleaved (process, thread, process, thread, ...), so that a machine's load falls on
both alike; prints the seconds of every epoch after the first (the first holds the set-up) and their median per
worker, then whether every run gave the same weights, bit for bit (the workers change the speed, not the batches).
``--noise-threads`` sets the augmentation's noise threads of every run as given instead of as the training picks
them (``train.training_noise_threads``: 1 on 2 cores), e.g. 2 for the code before that choice. The exit code is 1
where the runs' weights differ. The library is built at
``--library`` if missing (~10 s). The issue-16 target, the whole command within 20 minutes on 2 cores, is for
``qdots train``'s own time; this benchmark says where an epoch's time goes. ~1 min per run of 5 epochs on 2 cores.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np


def epoch_seconds(library: Path, worker: str, epochs: int, noise_threads: int | None, out: Path,
                  samples_per_epoch: int = 32_000) -> tuple[list[float], dict]:
    """Seconds of each epoch after the first, and the weights, of one run of the main network's training."""
    import qdots_bluesky.sim.learning.train as train
    from qdots_bluesky.sim.learning.augment_settings import AugmentationSettings
    from qdots_bluesky.sim.learning.settings import TrainingSettings
    from safetensors.numpy import load_file

    settings = TrainingSettings(max_epochs=epochs, coarse_epochs=0, batch_worker=worker,
                                samples_per_epoch=samples_per_epoch)
    chosen = train.training_noise_threads
    if noise_threads is not None:  # as given, not as the training would pick them
        train.training_noise_threads = lambda n_threads, torch_threads, cores: noise_threads
    try:
        result = train.train_model(library, out, settings, AugmentationSettings(), progress=False)
    finally:
        train.training_noise_threads = chosen
    ends = [h["seconds"] for h in result.history]
    return list(np.diff(ends)), load_file(str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, default=Path("library_q.h5"),
                        help="library HDF5 on the standard Q grid, built there if missing (default library_q.h5)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run, >= 2 (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per worker, interleaved (default 2)")
    parser.add_argument("--workers", nargs="+", choices=("process", "thread"), default=["process", "thread"],
                        help="batch workers to compare (default: process thread)")
    parser.add_argument("--samples-per-epoch", type=int, default=32_000,
                        help="augmented patterns per epoch (default 32000, the shipped recipe's)")
    parser.add_argument("--noise-threads", type=int, default=None,
                        help="the augmentation's noise threads of every run (default: as the training picks them)")
    args = parser.parse_args(argv)
    if (args.epochs < 2 or args.rounds < 1 or args.samples_per_epoch < 1
            or (args.noise_threads is not None and args.noise_threads < 1)):
        parser.error(f"--epochs {args.epochs}, --rounds {args.rounds}, --samples-per-epoch {args.samples_per_epoch}, "
                     f"--noise-threads {args.noise_threads}; accepted: epochs >= 2, rounds >= 1, samples >= 1, "
                     "noise threads >= 1")
    if not args.library.exists():
        from qdots_bluesky.sim.physics.library import LibrarySettings, build_library

        print(f"building the reference library at {args.library} ...", flush=True)
        build_library(LibrarySettings(tth_grid_deg=None), args.library, progress=False)
    from qdots_bluesky.sim.learning.batch_stream import can_fork

    if "process" in args.workers and not can_fork():
        parser.error("--workers process: the batch worker cannot be forked here (it needs Linux and the main thread), "
                     "so the training would use a thread; accepted here: --workers thread")
    seconds: dict[str, list[float]] = {w: [] for w in args.workers}
    weights = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for w in args.workers:
                s, wts = epoch_seconds(args.library, w, args.epochs, args.noise_threads, Path(tmp) / f"{w}{r}.safetensors",
                                       args.samples_per_epoch)
                seconds[w] += s
                weights.append(wts)
                print(f"round {r + 1}, {w:7s}: " + " ".join(f"{x:.2f}" for x in s) + " s per epoch", flush=True)
    for w, s in seconds.items():
        print(f"{w:7s}: median {statistics.median(s):.2f} s per epoch ({min(s):.2f}-{max(s):.2f}, {len(s)} epochs)")
    if len(weights) < 2:
        print("weights: one run, nothing to compare (n/a)")
        return 0
    same = all(a.keys() == weights[0].keys() and all(np.array_equal(a[k], weights[0][k]) for k in a) for a in weights)
    print(f"weights of all {len(weights)} runs identical: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
