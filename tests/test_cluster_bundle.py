"""From a task to training settings and a bundle (qdots train --task): material, grid, families and size range
follow the task; what the training cannot serve is refused in one line."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

from qdots_bluesky.models.task import InputSpec, Task, metal_shape_size_task, pbs_size_task  # noqa: E402
from qdots_bluesky.sim.learning.cluster_bundle import task_training_settings  # noqa: E402


def test_settings_follow_the_task_and_the_options():
    task = metal_shape_size_task("Ag", q_min=0.03, n_points=512, size_classes_nm=[1.5 + 0.5 * i for i in range(20)])
    s = task_training_settings(task, epochs=3, lr=None)
    assert (s.element, s.q_min, s.n_points, s.epochs) == ("Ag", 0.03, 512, 3) and s.lr == 2e-3
    assert s.families == task.target("shape").labels
    assert (s.d_min_nm, s.d_max_nm) == (1.0, 11.0) and s.ranges.mean_diameter_nm == (1.0, 11.0)


def test_tasks_the_cluster_training_cannot_serve_are_refused():
    with pytest.raises(ValueError, match="accepted here: a saxs-waxs task on a log-spaced grid"):
        task_training_settings(pbs_size_task([2.0, 3.0]))
    t = metal_shape_size_task()
    no_shape = Task("x", "Au", InputSpec("saxs-waxs", 0.02, 15, 64, "log"), t.values, t.size_classes_nm)
    with pytest.raises(ValueError, match="0 class targets"):
        task_training_settings(no_shape)
    with pytest.raises(ValueError, match="accepted: \\(low, high\\)"):
        task_training_settings(metal_shape_size_task(size_classes_nm=[2.0, 13.0]))


def test_train_options_left_out_take_each_task_s_own_defaults():
    import importlib

    parser = importlib.import_module("qdots_bluesky.cli.main").build_parser()
    args = parser.parse_args(["train", "--task", "metal-shape-size", "--epochs", "7"])
    assert args.epochs == 7 and args.max_minutes is None and args.learning_rate is None
    s = task_training_settings(metal_shape_size_task(), epochs=args.epochs, max_minutes=args.max_minutes,
                               lr=args.learning_rate)
    assert s.epochs == 7 and s.max_minutes == 45.0 and s.lr == 2e-3
