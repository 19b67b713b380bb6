"""What a model bundle answers: its task (targets, their kinds and units, the material and the input it reads).

A bundle declares its task in the metadata key ``task`` (:meth:`Task.to_dict`); bundles written before tasks
existed read as the PbS size preset, :func:`pbs_size_task`, so the shipped quantum-dot sizer is one bundle of the
pipeline and a metal-cluster shape model another. The predictor, ``qdots predict --json``, ``qdots replay`` and
``LiveSizer`` publish what the loaded bundle's task declares, with data keys and units from it
(:func:`qdots_bluesky.callbacks.schema.output_keys`).

Targets (:class:`Target`) are of two kinds:

- ``"classes"``: probabilities over ``labels`` (e.g. cluster families), with optional ``groups`` that sum labels
  into coarser classes (icosahedral / decahedral / fcc); published as ``<name>`` (the most probable label),
  ``<name>_confidence`` and ``<name>_probabilities`` (one per label), and the same for the groups' name;
- ``"value"``: a number with a 1-sigma uncertainty in ``unit``; published as ``<name>`` and its standard deviation
  (:meth:`Target.std_key`: ``size_nm`` -> ``size_std_nm``, ``dispersion`` -> ``dispersion_std``).

The input (:class:`InputSpec`): ``"waxs-standardized"`` (the PbS standardization: a linear Q grid, mean-1
intensity, one channel) or ``"saxs-waxs"`` (a log-spaced Q grid over SAXS and WAXS, two channels: asinh of the
intensity over its median and the mask of measured points; :mod:`qdots_bluesky.saxs_waxs_input`).
Presets (:data:`PRESETS`): ``pbs-size`` and ``metal-shape-size``. No NumPy or torch needed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

TARGET_KINDS = ("classes", "value")
INPUT_KINDS = ("waxs-standardized", "saxs-waxs")
#: The cluster families of :mod:`qdots_bluesky.sim.physics.metal_clusters`, and their structure groups.
METAL_FAMILIES = ("icosahedron", "decahedron", "octahedron", "truncated_octahedron", "cuboctahedron", "sphere")
METAL_STRUCTURES = {"icosahedral": ["icosahedron"], "decahedral": ["decahedron"],
                    "fcc": ["octahedron", "truncated_octahedron", "cuboctahedron", "sphere"]}


#: Data keys every sizer publishes besides a task's targets.
RESERVED_KEYS = frozenset({"outcome", "status", "flags", "message", "source_seq_num", "source_uid", "latency_ms",
                           "probabilities", "size_class_nm", "ood_distance", "nanocrystal_probability"})


class TaskError(ValueError):
    """A task that cannot be read; the message says what was wrong and what is accepted."""


@dataclass(frozen=True)
class Target:
    """One quantity a model answers. ``name`` is the published data key; ``unit`` for values ("nm",
    "dimensionless"); ``labels`` and optional ``groups`` (group name, its name -> labels) for classes."""

    name: str
    kind: str
    description: str = ""
    unit: str | None = None
    labels: tuple[str, ...] = ()
    group_name: str = ""
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise TaskError(f"target name {self.name!r}; accepted: a Python identifier (it becomes a data key)")
        if self.kind not in TARGET_KINDS:
            raise TaskError(f"target {self.name!r} has kind {self.kind!r}; accepted: {', '.join(TARGET_KINDS)}")
        if self.kind == "classes":
            if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
                raise TaskError(f"target {self.name!r}: labels {list(self.labels)}; accepted: two or more distinct labels")
            members = [m for _, ms in self.groups for m in ms]
            if self.groups and (sorted(members) != sorted(self.labels) or not self.group_name.isidentifier()):
                raise TaskError(f"target {self.name!r}: groups {dict(self.groups)} named {self.group_name!r}; accepted: "
                                "a group name (identifier) and groups that hold every label exactly once")
        elif self.unit is None:
            raise TaskError(f"value target {self.name!r} has no unit; accepted: e.g. 'nm' or 'dimensionless'")

    def std_key(self) -> str:
        """The data key of a value's 1-sigma uncertainty: ``size_nm`` -> ``size_std_nm``, ``x`` -> ``x_std``."""
        return self.name[:-3] + "_std_nm" if self.name.endswith("_nm") else self.name + "_std"

    def group_labels(self) -> list[str]:
        return [g for g, _ in self.groups]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "description": self.description}
        if self.kind == "value":
            out["unit"] = self.unit
        else:
            out["labels"] = list(self.labels)
            if self.groups:
                out["group_name"] = self.group_name
                out["groups"] = [{"name": g, "labels": list(ms)} for g, ms in self.groups]  # a list keeps the order
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Target":
        if not isinstance(d, Mapping) or "name" not in d or "kind" not in d:
            raise TaskError(f"target {d!r}; accepted: an object with 'name' and 'kind'")
        labels = d.get("labels", ())
        if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
            raise TaskError(f"target {d['name']!r}: labels {labels!r}; accepted: a list of label names")
        groups = d.get("groups") or []
        if isinstance(groups, Mapping):
            groups = [{"name": g, "labels": ms} for g, ms in groups.items()]
        if not isinstance(groups, (list, tuple)) or not all(
                isinstance(g, Mapping) and "name" in g and isinstance(g.get("labels"), (list, tuple)) for g in groups):
            raise TaskError(f"target {d['name']!r}: groups {groups!r}; accepted: a list of {{'name', 'labels'}} objects")
        return cls(name=str(d["name"]), kind=str(d["kind"]), description=str(d.get("description", "")),
                   unit=None if d.get("unit") is None else str(d["unit"]),
                   labels=tuple(str(v) for v in labels), group_name=str(d.get("group_name", "")),
                   groups=tuple((str(g["name"]), tuple(str(m) for m in g["labels"])) for g in groups))


@dataclass(frozen=True)
class InputSpec:
    """What the network reads: ``kind`` (:data:`INPUT_KINDS`), the Q grid (1/A: ``q_min``, ``q_max``,
    ``n_points``, ``spacing`` "linear" or "log") and the channels' names."""

    kind: str
    q_min: float
    q_max: float
    n_points: int
    spacing: str = "linear"
    channels: tuple[str, ...] = ("intensity",)

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise TaskError(f"input kind {self.kind!r}; accepted: {', '.join(INPUT_KINDS)}")
        if not (0 < self.q_min < self.q_max and int(self.n_points) >= 2 and self.spacing in ("linear", "log")):
            raise TaskError(f"input grid Q {self.q_min}-{self.q_max} 1/A, {self.n_points} points, {self.spacing!r}; "
                            "accepted: 0 < q_min < q_max, n_points >= 2, spacing 'linear' or 'log'")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "q_min": self.q_min, "q_max": self.q_max, "n_points": int(self.n_points),
                "spacing": self.spacing, "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InputSpec":
        try:
            if float(d["n_points"]) != int(d["n_points"]):
                raise ValueError(f"n_points {d['n_points']!r} is not a whole number")
            return cls(kind=str(d["kind"]), q_min=float(d["q_min"]), q_max=float(d["q_max"]),
                       n_points=int(d["n_points"]), spacing=str(d.get("spacing", "linear")),
                       channels=tuple(str(c) for c in d.get("channels", ("intensity",))))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TaskError):
                raise
            raise TaskError(f"input {d!r}; accepted: an object with kind, q_min, q_max, n_points ({exc})") from None


@dataclass(frozen=True)
class Task:
    """A model's task: its ``name``, the ``material``, what it reads (``input``), what it answers (``targets``),
    the size classes (nm) its size probabilities are given over, and whether it says when no particles are there
    (``presence``)."""

    name: str
    material: str
    input: InputSpec
    targets: tuple[Target, ...]
    size_classes_nm: tuple[float, ...] = ()
    presence: bool = True
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [t.name for t in self.targets]
        names += [t.group_name for t in self.targets if t.groups]
        if not self.targets or len(set(names)) != len(names):
            raise TaskError(f"task {self.name!r} targets {names}; accepted: one or more targets with distinct names")
        keys = self.published_keys()
        clash = sorted({k for k in keys if keys.count(k) > 1} | (set(keys) & RESERVED_KEYS))
        if clash:
            raise TaskError(f"task {self.name!r}: the data keys {clash} would be published twice or are the sizer's own; "
                            "accepted: target names whose keys (name, its _std, _confidence, _probabilities) are distinct")
        if any(b <= a for a, b in zip(self.size_classes_nm, self.size_classes_nm[1:])):
            raise TaskError(f"task {self.name!r}: size classes {list(self.size_classes_nm)}; accepted: increasing (nm)")

    def published_keys(self) -> list[str]:
        """The data keys the targets publish (values and their uncertainties, labels, confidences, probabilities)."""
        keys = []
        for t in self.values:
            keys += [t.name, t.std_key()]
        for t in self.classes:
            for name in [t.name] + ([t.group_name] if t.groups else []):
                keys += [name, f"{name}_confidence", f"{name}_probabilities"]
        return keys

    def target(self, name: str) -> Target:
        """The target called ``name`` (KeyError with the known names otherwise)."""
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"task {self.name!r} has no target {name!r}; it has {[t.name for t in self.targets]}")

    @property
    def values(self) -> list[Target]:
        return [t for t in self.targets if t.kind == "value"]

    @property
    def classes(self) -> list[Target]:
        return [t for t in self.targets if t.kind == "classes"]

    @property
    def is_pbs_preset(self) -> bool:
        """True for the quantum-dot size task of the shipped model (the published layout of ``qdots_size``)."""
        return self.name == "pbs-size"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "material": self.material, "description": self.description,
                "input": self.input.to_dict(), "targets": [t.to_dict() for t in self.targets],
                "size_classes_nm": list(self.size_classes_nm), "presence": self.presence, **dict(self.extra)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Task":
        if not isinstance(d, Mapping):
            raise TaskError(f"task {d!r}; accepted: an object with name, material, input and targets")
        missing = [k for k in ("name", "material", "input", "targets") if k not in d]
        if missing:
            raise TaskError(f"task lacks {missing}; accepted: an object with name, material, input and targets")
        known = {"name", "material", "description", "input", "targets", "size_classes_nm", "presence"}
        try:
            classes = tuple(float(v) for v in d.get("size_classes_nm", ()))
            if not all(v > 0 for v in classes):  # also refuses NaN
                raise ValueError
        except (TypeError, ValueError):
            raise TaskError(f"task size_classes_nm {d.get('size_classes_nm')!r}; accepted: positive numbers (nm)") from None
        if not isinstance(d.get("presence", True), bool):
            raise TaskError(f"task presence {d.get('presence')!r}; accepted: true or false")
        if not isinstance(d["targets"], (list, tuple)):
            raise TaskError(f"task targets {d['targets']!r}; accepted: a list of target objects")
        return cls(name=str(d["name"]), material=str(d["material"]), input=InputSpec.from_dict(d["input"]),
                   targets=tuple(Target.from_dict(t) for t in d["targets"]), size_classes_nm=classes,
                   presence=bool(d.get("presence", True)), description=str(d.get("description", "")),
                   extra={k: v for k, v in d.items() if k not in known})


def pbs_size_task(size_classes_nm: Any = (), q_min: float = 1.0, q_max: float = 15.0, n_points: int = 5004,
                  material: str = "PbS") -> Task:
    """The quantum-dot size task (the shipped model and every bundle without a ``task``): number- and
    volume-weighted mean diameters, dispersion and strain, each +- 1 sigma, and size-class probabilities."""
    nm, one = "nm", "dimensionless"
    return Task(
        name="pbs-size", material=material, description="size of colloidal quantum dots from WAXS",
        input=InputSpec("waxs-standardized", q_min, q_max, n_points),
        targets=(Target("size_nm", "value", "number-weighted mean diameter", nm),
                 Target("size_volume_nm", "value", "volume-weighted mean diameter", nm),
                 Target("dispersion", "value", "relative standard deviation of the log-normal", one),
                 Target("strain", "value", "fractional change of the lattice parameter from bulk", one)),
        size_classes_nm=tuple(float(v) for v in size_classes_nm))


def metal_shape_size_task(element: str = "Au", q_min: float = 0.02, q_max: float = 15.0, n_points: int = 1024,
                          size_classes_nm: Any = None) -> Task:
    """Shape and size of fcc-metal nanoclusters from SAXS + WAXS: the cluster family (six, summed into three
    structures), the number- and volume-weighted mean equal-volume diameters and the dispersion, each +- 1 sigma,
    and 0.5 nm size-class probabilities (1-10 nm)."""
    if size_classes_nm is None:
        size_classes_nm = [1.0 + 0.5 * i for i in range(19)]
    nm = "nm"
    groups = tuple((g, tuple(ms)) for g, ms in METAL_STRUCTURES.items())
    return Task(
        name="metal-shape-size", material=element,
        description=f"shape and size of {element} nanoclusters from SAXS + WAXS",
        input=InputSpec("saxs-waxs", q_min, q_max, n_points, "log", ("asinh_intensity", "mask")),
        targets=(Target("shape", "classes", "cluster family (number fractions for mixtures)", labels=METAL_FAMILIES,
                        group_name="structure", groups=groups),
                 Target("size_nm", "value", "number-weighted mean equal-volume diameter", nm),
                 Target("size_volume_nm", "value", "volume-weighted mean equal-volume diameter", nm),
                 Target("dispersion", "value", "relative standard deviation of the number distribution",
                        "dimensionless")),
        size_classes_nm=tuple(float(v) for v in size_classes_nm))


#: Named tasks for ``qdots train --task``.
PRESETS = {"pbs-size": pbs_size_task, "metal-shape-size": metal_shape_size_task}


def task_of(metadata: Mapping[str, Any]) -> Task:
    """The task a bundle's metadata declares; bundles without one are the PbS size preset with their classes."""
    if metadata.get("task") is not None:
        return Task.from_dict(metadata["task"])
    grid = metadata.get("q_grid")
    grid = grid if isinstance(grid, Mapping) else {}  # a bad grid is the bundle check's to report
    return pbs_size_task(metadata.get("size_classes_nm", ()), float(grid.get("q_min", 1.0)),
                         float(grid.get("q_max", 15.0)), int(grid.get("n_points", 5004)))


def load_task(spec: str | Path) -> Task:
    """A task from a preset name (:data:`PRESETS`) or a JSON file (:meth:`Task.to_dict`'s layout)."""
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]()
    path = Path(spec)
    if not path.is_file():
        raise TaskError(f"task {str(spec)!r}; accepted: a preset ({', '.join(PRESETS)}) or a JSON task file")
    try:
        return Task.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise TaskError(f"{path}: not JSON ({exc}); accepted: a task object as Task.to_dict writes it") from None
