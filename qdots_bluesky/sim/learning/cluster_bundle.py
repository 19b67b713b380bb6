"""From a task to a trained SAXS + WAXS bundle: the training settings a task asks for, and the bundle it gives.

``qdots train --task metal-shape-size -o gold.safetensors`` runs :func:`task_training_settings`,
:func:`~.cluster_training.train_cluster_model` and :func:`save_cluster_bundle`. The bundle declares its task
(:mod:`qdots_bluesky.models.task`: material, Q grid, families and structure groups, values with units, size
classes) and carries the provenance of its training: the settings and augmentation, the clusters of each family
(train / held-out), the population ranges (the predictor's trained range of sizes), the held-out metrics and the
per-epoch history.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ...models.architectures import CLUSTER_CNN
from ...models.bundle import save_bundle
from ...models.task import Task
from .cluster_training import ClusterTrainingSettings, TrainedClusterModel


def task_training_settings(task: Task, **overrides: Any) -> ClusterTrainingSettings:
    """The training settings of a SAXS + WAXS task: its material, Q grid and families; ``overrides`` (epochs,
    populations_per_epoch, batch_size, lr, max_minutes, seed, ...) replace the defaults. ValueError for a task this
    training cannot serve."""
    spec = task.input
    if spec.kind != "saxs-waxs" or spec.spacing != "log":
        raise ValueError(f"task {task.name!r} reads {spec.kind} on a {spec.spacing} grid; accepted here: a saxs-waxs "
                         "task on a log-spaced grid")
    shapes = task.classes
    if len(shapes) != 1:
        raise ValueError(f"task {task.name!r} has {len(shapes)} class targets; accepted: one (the cluster families)")
    base = ClusterTrainingSettings()
    classes = task.size_classes_nm
    d_range = (min(classes[0], base.d_min_nm), max(classes[-1], base.d_max_nm)) if classes else (base.d_min_nm,
                                                                                                 base.d_max_nm)
    settings = replace(base, element=task.material, families=tuple(shapes[0].labels), q_min=spec.q_min,
                       q_max=spec.q_max, n_points=int(spec.n_points), d_min_nm=float(d_range[0]),
                       d_max_nm=float(d_range[1]),
                       ranges=replace(base.ranges, mean_diameter_nm=(float(d_range[0]), float(d_range[1]))))
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def save_cluster_bundle(path: str | Path, trained: TrainedClusterModel, task: Task) -> Path:
    """Write the trained cluster network with its calibration, its task and its training's provenance."""
    config = dict(trained.model.config)
    if config.get("architecture") != CLUSTER_CNN:
        raise ValueError(f"the model's architecture is {config.get('architecture')!r}; accepted: {CLUSTER_CNN!r}")
    settings = trained.info.get("settings", {})
    ranges = settings.get("ranges", {})
    training = {**settings, "population_ranges": ranges, "parameters": trained.info.get("parameters"),
                "basis": trained.info.get("basis", {}), "train_seconds": trained.metrics.get("train_seconds"),
                "command": f"qdots train --task {task.name} -o {Path(path).name}"}
    metadata = {"task": task, "training": training, "augmentation": trained.info.get("augmentation", {}),
                "metrics": trained.metrics, "history": trained.history}
    return save_bundle(path, trained.model, metadata, trained.tensors)
