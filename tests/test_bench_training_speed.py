"""benchmarks/bench_training_speed.py: seconds per epoch with the batches in a worker process or thread."""
from __future__ import annotations

import pytest

from _bench_helpers import load_benchmark

pytest.importorskip("torch")
bench = load_benchmark("bench_training_speed")


def test_both_workers_train_the_same_network(tmp_path, capsys):
    from qdots_bluesky.sim.physics.library import LibrarySettings, build_library

    library = build_library(LibrarySettings(mean_diameters_nm=[2.0, 4.0, 6.0], dispersions=[0.05, 0.2],
                                            lattice_ratios=[0.9975, 0.999, 1.001, 1.003, 1.0051], tth_grid_deg=None),
                            tmp_path / "lib.h5", progress=False)
    assert bench.main(["--library", str(library), "--epochs", "2", "--rounds", "1", "--samples-per-epoch", "512"]) == 0
    text = capsys.readouterr().out
    assert "round 1, process:" in text and "round 1, thread :" in text and "median" in text
    assert "weights of all 2 runs identical: yes" in text
    # the noise threads as given (the code before the training chose them): the same batches still
    assert bench.main(["--library", str(library), "--epochs", "2", "--rounds", "1", "--samples-per-epoch", "512",
                       "--noise-threads", "2"]) == 0
    assert "weights of all 2 runs identical: yes" in capsys.readouterr().out


def test_bad_options_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--epochs", "1"])
    assert "accepted: epochs >= 2" in capsys.readouterr().err
