"""The model bundle: one ``.safetensors`` file with the weights, calibration and metadata.

Format (version 1). A standard safetensors file (https://github.com/huggingface/safetensors):
loading it parses a JSON header and copies raw little-endian arrays; it executes no code.

Tensors:

========================================  =========  ==========================================
name                                      shape      meaning
========================================  =========  ==========================================
``model.<state-dict key>``                various    QDotsNet weights and BatchNorm running stats
``calibration.temperature_size``          (1,)       temperature T > 0 of the size logits
``calibration.temperature_dispersion``    (1,)       temperature T > 0 of the dispersion logits
``ood.feature_mean``                      (32,)      mean of the pooled features (held-out set)
``ood.feature_precision``                 (32, 32)   inverse (shrunk) covariance of those features
``ood.threshold``                         (1,)       Mahalanobis distance above which a pattern
                                                     is flagged ``out_of_distribution``
``coarse.<any name above>``               various    optional coarse-sampling specialist (below)
any other name                            any        kept and returned in ``tensors``
========================================  =========  ==========================================

Network weights with two or more dimensions are stored as float16 (half the file; the rounding,
a relative 5e-4, moves no prediction measurably) and read back as float32; BatchNorm statistics,
biases and the extra tensors stay float32.

A bundle may carry a second network of the same config shape and classes, a *coarse-sampling
specialist* fine-tuned on patterns measured with Q steps about as wide as the peaks of the largest
dots: its weights and extra tensors under the prefix ``coarse.`` and in the metadata
``coarse_specialist`` = {``network``, ``min_source_q_step`` (1/A: patterns whose source step is at
least this are sized by the specialist), ``augmentation``, ``training``, ``metrics``, ``history``}.
Programs that do not know it read the main network unchanged.

The safetensors header metadata (a str -> str map) holds ``format`` = "qdots-bundle",
``format_version`` = "1" and ``qdots_metadata``: a JSON object with

- required: ``format``, ``format_version``, ``network`` (the QDotsNet config), ``q_grid``
  (:meth:`QGrid.to_dict`), ``size_classes_nm``, ``dispersion_classes``;
- written by :func:`save_bundle` when absent: ``created`` (ISO 8601 UTC), ``program_version``,
  ``augmentation`` ({}), ``training_library`` ({"path": ..., "sha256": ...} or {}),
  ``training`` ({}), ``metrics`` ({}).

:func:`calibration.calibration_tensors` computes the five extra tensors from held-out outputs.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..standardize import QGrid
from .architectures import (
    QDOTS_CNN,
    T_DISPERSION_SLOPE,
    architecture_of,
    check_network_config,
    feature_size,
    numpy_network,
    required_tensors,
    state_shapes,
    task_mismatch,
)
from .engine import check_config
from .solvent_probe import check_probes
from .task import Task, TaskError, task_of

if TYPE_CHECKING:  # pragma: no cover
    from .network import QDotsNet

BUNDLE_FORMAT = "qdots-bundle"
BUNDLE_FORMAT_VERSION = 1
#: Prefix of the network weights among the tensors.
WEIGHT_PREFIX = "model."
T_SIZE_TEMPERATURE = "calibration.temperature_size"
T_DISPERSION_TEMPERATURE = "calibration.temperature_dispersion"
T_FEATURE_MEAN = "ood.feature_mean"
T_FEATURE_PRECISION = "ood.feature_precision"
T_OOD_THRESHOLD = "ood.threshold"
#: Power-law calibration (2 x engine.CONTINUOUS_TARGETS: ln a, b) of the continuous head's standard deviations,
#: fitted on held-out simulations (models.continuous.fit_interval_calibration); bundles whose network has a
#: continuous head hold it.
T_CONTINUOUS_INTERVAL = "calibration.continuous_interval"
#: Solvent patterns (k x n_points, mean 1 on the grid) of the solvent probe (models.solvent_probe), optional: a
#: bundle with them widens its size uncertainties by how far the size moves when solvent is mixed in.
T_SOLVENT_PROBE = "calibration.solvent_probe"
#: Extra tensors every bundle holds.
REQUIRED_TENSORS = (T_SIZE_TEMPERATURE, T_DISPERSION_TEMPERATURE, T_FEATURE_MEAN, T_FEATURE_PRECISION, T_OOD_THRESHOLD)
#: Metadata keys every bundle holds; a quantum-dot sizer (architecture QDotsNet) also :data:`QDOTS_METADATA`.
REQUIRED_METADATA = ("format", "format_version", "network")
QDOTS_METADATA = ("q_grid", "size_classes_nm", "dispersion_classes")
#: Prefix of the coarse-sampling specialist's weights and tensors; its metadata key.
COARSE_PREFIX = "coarse."
COARSE_METADATA = "coarse_specialist"
#: File name of the shipped model inside this package.
DEFAULT_BUNDLE_NAME = "default_model.safetensors"
#: The shipped bundle of each task (models/ inside this package).
SHIPPED_BUNDLES = {"pbs-size": DEFAULT_BUNDLE_NAME, "metal-shape-size": "metal_shape_size_au.safetensors"}
_HEADER_KEY = "qdots_metadata"


class BundleError(ValueError):
    """A model bundle that cannot be written or read; the message names the file and the fault."""


def default_bundle_path() -> Path:
    """Path of the shipped model, ``qdots_bluesky/models/default_model.safetensors`` (may not exist yet)."""
    return Path(__file__).resolve().parent / DEFAULT_BUNDLE_NAME


def shipped_bundle_path(task: str = "pbs-size") -> Path:
    """Path of the shipped bundle of a task (:data:`SHIPPED_BUNDLES`; may not exist yet)."""
    if task not in SHIPPED_BUNDLES:
        raise ValueError(f"no shipped model for the task {task!r}; accepted: {', '.join(SHIPPED_BUNDLES)}")
    return default_bundle_path().with_name(SHIPPED_BUNDLES[task])


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file (e.g. the training library, for ``training_library.sha256``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class BundleContents:
    """A bundle read without PyTorch: metadata, weights and extra tensors as NumPy arrays."""

    path: Path
    metadata: dict[str, Any]
    weights: dict[str, np.ndarray]
    tensors: dict[str, np.ndarray]
    coarse: "BundleContents | None" = None

    @property
    def coarse_min_q_step(self) -> float | None:
        """Source Q step (1/A) from which patterns go to the coarse-sampling specialist; None without one."""
        return None if self.coarse is None else float(self.metadata[COARSE_METADATA]["min_source_q_step"])

    @property
    def config(self) -> dict[str, Any]:
        """The network config."""
        return self.metadata["network"]

    @property
    def architecture(self) -> str:
        """The network's architecture (:mod:`.architectures`)."""
        return architecture_of(self.config)

    @property
    def task(self) -> Task:
        """What the model answers (:mod:`.task`; bundles without a task: the PbS size preset)."""
        return task_of(self.metadata)

    @property
    def grid(self) -> QGrid:
        """The Q grid a quantum-dot sizer was trained on (the standardization's linear grid)."""
        return QGrid.from_dict(self.metadata["q_grid"])

    def numpy_model(self) -> Any:
        """The network evaluated with NumPy (no PyTorch needed)."""
        return numpy_network(self.config, self.weights)


@dataclass
class CoarseSpecialist:
    """The coarse-sampling specialist to store beside the main network (see the module docstring).

    ``tensors``: its calibration and out-of-distribution tensors (:data:`REQUIRED_TENSORS`);
    ``info``: JSON-able ``augmentation``, ``training``, ``metrics``, ``history`` of its fine-tuning.
    """

    model: "QDotsNet"
    tensors: Mapping[str, Any]
    min_source_q_step: float
    info: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
def save_bundle(path: str | Path, model: "QDotsNet", metadata: Mapping[str, Any],
                extra_tensors: Mapping[str, Any], coarse: CoarseSpecialist | None = None) -> Path:
    """Write ``model`` weights, ``extra_tensors`` and ``metadata`` to one safetensors file.

    ``metadata`` must be JSON-able (NumPy scalars/arrays and Paths are converted); ``network`` is taken from
    ``model.config``, and for a quantum-dot sizer ``size_classes_nm`` and ``dispersion_classes`` too (a
    different value given is an error), ``q_grid`` defaults to the standard grid; other architectures need a
    ``task`` (a :class:`~.task.Task` or its dict). ``extra_tensors`` must hold
    :data:`REQUIRED_TENSORS` (see :func:`calibration.calibration_tensors`). The file is checked as
    :func:`read_bundle` would and written atomically. ``coarse``: an optional coarse-sampling
    specialist with the same classes and grid. Raises BundleError.
    """
    from safetensors.numpy import save_file

    from .. import __version__

    path = Path(path)
    meta = dict(metadata)
    try:
        cfg = check_network_config(model.config)
    except ValueError as exc:
        raise BundleError(f"{path}: bad network config ({exc})") from None
    if isinstance(meta.get("task"), Task):
        meta["task"] = meta["task"].to_dict()
    owned = [("network", cfg)]
    if architecture_of(cfg) == QDOTS_CNN:
        owned += [("size_classes_nm", cfg["size_classes_nm"]), ("dispersion_classes", cfg["dispersion_classes"])]
        meta.setdefault("q_grid", QGrid(n_points=cfg["n_points"]).to_dict())
        if isinstance(meta["q_grid"], QGrid):
            meta["q_grid"] = meta["q_grid"].to_dict()
    for key, value in owned:
        given = meta.get(key)
        if given is not None and jsonable(given) != jsonable(value):
            raise BundleError(f"{path}: metadata {key!r} = {given!r} differs from the model's {value!r}")
        meta[key] = value
    meta["format"] = BUNDLE_FORMAT
    meta["format_version"] = BUNDLE_FORMAT_VERSION
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta.setdefault("program_version", __version__)
    for key in ("augmentation", "training_library", "training", "metrics"):
        meta.setdefault(key, {})
    meta.pop(COARSE_METADATA, None)
    if coarse is not None:
        step = float(coarse.min_source_q_step)
        if not (math.isfinite(step) and step > 0):
            raise BundleError(f"{path}: coarse specialist min_source_q_step={coarse.min_source_q_step!r}; accepted: a "
                              "finite step > 0 in 1/A")
        meta[COARSE_METADATA] = {**dict(coarse.info), "network": check_config(coarse.model.config),
                                 "min_source_q_step": step}
    try:
        meta = jsonable(meta)
        header = {"format": BUNDLE_FORMAT, "format_version": str(BUNDLE_FORMAT_VERSION),
                  _HEADER_KEY: json.dumps(meta, allow_nan=False, sort_keys=True)}
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{path}: metadata is not JSON-serialisable ({exc})") from None

    from .network import bundle_weights

    members = [("", model, extra_tensors, meta)]
    if coarse is not None:
        members.append((COARSE_PREFIX, coarse.model, coarse.tensors, _member_metadata(meta)))
    tensors = {}
    for prefix, net, extra, member_meta in members:
        weights = {k: _stored(v) for k, v in bundle_weights(net).items()}
        extras = {}
        for name, value in extra.items():
            if name.startswith((WEIGHT_PREFIX, COARSE_PREFIX)):
                raise BundleError(f"{path}: extra tensor name {name!r} must not start with {WEIGHT_PREFIX!r} or "
                                  f"{COARSE_PREFIX!r}")
            arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            extras[name] = np.ascontiguousarray(arr).copy()
        _validate(path, member_meta, {k: v.astype(np.float32) for k, v in weights.items()}, extras,
                  "the coarse specialist's " if prefix else "")
        tensors.update({prefix + WEIGHT_PREFIX + k: np.ascontiguousarray(v) for k, v in weights.items()})
        tensors.update({prefix + k: v for k, v in extras.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=header)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_bundle(path: str | Path | None = None, grid: QGrid | None = None) -> BundleContents:
    """Read and check a bundle without PyTorch (``path`` None: the shipped model).

    ``grid``: the Q grid the caller standardizes to; a bundle trained on another grid is refused.
    Raises BundleError (missing file, not safetensors or corrupted, not a qdots bundle, wrong
    format version, missing or malformed tensors or metadata, other Q grid).
    """
    from safetensors import safe_open

    path = _resolve(path)
    try:
        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
            arrays = {k: np.array(f.get_tensor(k), copy=True) for k in f.keys()}
    except Exception as exc:  # SafetensorError, OSError, ... : the file is not a readable safetensors file
        raise BundleError(
            f"{path}: not a readable safetensors model bundle ({type(exc).__name__}: {exc}); the file is truncated, "
            "corrupted or of another format (PyTorch .pt/.pth pickles are not accepted: loading them can run code)"
        ) from None
    if header.get("format") != BUNDLE_FORMAT or _HEADER_KEY not in header:
        raise BundleError(f"{path}: a safetensors file but not a qdots model bundle (no '{_HEADER_KEY}' metadata "
                          f"with format '{BUNDLE_FORMAT}')")
    version = header.get("format_version")
    if version != str(BUNDLE_FORMAT_VERSION):
        raise BundleError(f"{path}: bundle format version {version!r}; this program (qdots-bluesky) reads version "
                          f"{BUNDLE_FORMAT_VERSION}: update qdots-bluesky or retrain the model with `qdots train`")
    try:
        meta = json.loads(header[_HEADER_KEY])
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: the bundle metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{path}: the bundle metadata is not a JSON object")
    coarse_arrays = {k[len(COARSE_PREFIX):]: v for k, v in arrays.items() if k.startswith(COARSE_PREFIX)}
    arrays = {k: v for k, v in arrays.items() if not k.startswith(COARSE_PREFIX)}
    contents = _contents(path, meta, arrays, "")
    if (COARSE_METADATA in meta) != bool(coarse_arrays):
        raise BundleError(f"{path}: the coarse specialist is incomplete: {'metadata' if coarse_arrays else 'tensors'} "
                          f"'{COARSE_METADATA if coarse_arrays else COARSE_PREFIX + '*'}' missing")
    if coarse_arrays:
        spec = meta[COARSE_METADATA]
        step = spec.get("min_source_q_step") if isinstance(spec, dict) else None
        if not isinstance(step, (int, float)) or not (math.isfinite(step) and step > 0):
            raise BundleError(f"{path}: the coarse specialist's min_source_q_step is {step!r}; accepted: a step > 0 (1/A)")
        try:
            member_meta = _member_metadata(meta)
        except BundleError as exc:
            raise BundleError(f"{path}: {exc}") from None
        contents.coarse = _contents(path, member_meta, coarse_arrays, "the coarse specialist's ")
    if grid is not None and contents.architecture == QDOTS_CNN and contents.grid != grid:
        raise BundleError(f"{path}: the model was trained on the Q grid {contents.grid.to_dict()}, not on the requested "
                          f"{grid.to_dict()}; standardize to the model's grid or use a model trained on yours")
    return contents


# --------------------------------------------------------------------------------------------
def _resolve(path: str | Path | None) -> Path:
    if path is None:
        path = default_bundle_path()
        if not path.is_file():
            raise BundleError(
                f"{path}: the shipped model has not been trained yet (no such file). Train one with `qdots train` "
                "(see `qdots train --help`) and save it there, or pass the path of a model bundle "
                "(--model PATH on the command line)"
            )
        return path
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: model bundle not found; accepted: a .safetensors bundle written by `qdots train`")
    if not path.is_file():
        raise BundleError(f"{path}: is not a file; accepted: a .safetensors bundle written by `qdots train`")
    return path


def _stored(weight: np.ndarray) -> np.ndarray:
    """A weight as the bundle stores it: float16 for matrices and kernels, float32 for vectors."""
    return weight.astype(np.float16 if weight.ndim >= 2 else np.float32)


def _member_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The coarse specialist's view of the bundle metadata: its own network, training and metrics."""
    spec = meta[COARSE_METADATA]
    if not isinstance(spec, Mapping) or "network" not in spec:
        raise BundleError(f"metadata '{COARSE_METADATA}' must be an object with the specialist's 'network' config")
    out = {k: v for k, v in meta.items() if k not in (COARSE_METADATA, "history")}
    out.update({k: spec[k] for k in ("network", "augmentation", "training", "metrics", "history") if k in spec})
    return out


def _contents(path: Path, meta: dict[str, Any], arrays: Mapping[str, np.ndarray], who: str) -> BundleContents:
    """Weights (as float32) and extra tensors of one network, checked against ``meta``."""
    weights = {k[len(WEIGHT_PREFIX):]: v.astype(np.float32) if v.dtype == np.float16 else v
               for k, v in arrays.items() if k.startswith(WEIGHT_PREFIX)}
    extras = {k: v for k, v in arrays.items() if not k.startswith(WEIGHT_PREFIX)}
    _validate(path, meta, weights, extras, who)
    return BundleContents(path=path, metadata=meta, weights=weights, tensors=extras)


def _validate(path: Path, meta: dict[str, Any], weights: Mapping[str, np.ndarray],
              extras: Mapping[str, np.ndarray], who: str = "") -> None:
    """Check metadata, weights and extra tensors; raise BundleError naming ``path`` (and ``who``: which network)."""
    try:
        _check_member(meta, weights, extras)
    except BundleError as exc:
        raise BundleError(f"{path}: {who}{exc}") from None


def _check_member(meta: dict[str, Any], weights: Mapping[str, np.ndarray], extras: Mapping[str, np.ndarray]) -> None:
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise BundleError(f"bundle metadata lacks {missing}")
    if meta["format"] != BUNDLE_FORMAT or meta["format_version"] != BUNDLE_FORMAT_VERSION:
        raise BundleError(f"metadata says format {meta['format']!r} version {meta['format_version']!r}; "
                          f"expected {BUNDLE_FORMAT!r} version {BUNDLE_FORMAT_VERSION}")
    try:
        cfg = check_network_config(meta["network"])
        task = task_of(meta)
    except TaskError as exc:
        raise BundleError(f"bad task in the metadata ({exc})") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"bad network config in the metadata ({exc})") from None
    if architecture_of(cfg) == QDOTS_CNN:
        _check_qdots_metadata(meta, cfg)
    elif "task" not in meta:
        raise BundleError(f"a {architecture_of(cfg)} network needs a 'task' in the metadata (see qdots_bluesky.models.task)")
    elif mismatch := task_mismatch(cfg, task):
        raise BundleError(mismatch)
    expected = state_shapes(cfg)
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing or unexpected:
        raise BundleError(f"network weights do not match the config: missing {missing[:5]}"
                          f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}")
    for k, shape in expected.items():
        if tuple(weights[k].shape) != shape:
            raise BundleError(f"weight {WEIGHT_PREFIX}{k} has shape {tuple(weights[k].shape)}, expected {shape}")
        if not np.isfinite(weights[k]).all():
            raise BundleError(f"weight {WEIGHT_PREFIX}{k} holds NaN or infinite values")
    needed = required_tensors(cfg) + (T_FEATURE_MEAN, T_FEATURE_PRECISION, T_OOD_THRESHOLD)
    missing = [k for k in needed if k not in extras]
    if missing:
        raise BundleError(f"bundle lacks the tensors {missing} (temperatures and out-of-distribution "
                          "statistics: see qdots_bluesky.models.calibration)")
    n_cont = len(cfg["continuous_scales"]) if cfg.get("continuous_head", True) and "continuous_scales" in cfg else 0
    if n_cont:
        a = extras.get(T_CONTINUOUS_INTERVAL)
        if a is None or tuple(a.shape) != (2, n_cont) or not (np.isfinite(a).all() and (a[1] > 0).all()):
            raise BundleError(f"the network has a continuous head but the tensor {T_CONTINUOUS_INTERVAL} is missing "
                              f"or bad; accepted: shape (2, {n_cont}), finite, exponents (second row) > 0")
    probes = extras.get(T_SOLVENT_PROBE)
    if probes is not None:
        if not n_cont:
            raise BundleError(f"tensor {T_SOLVENT_PROBE} in a bundle without a continuous head; accepted: only with one")
        try:
            check_probes(probes, int(cfg.get("n_points", probes.shape[-1])))
        except ValueError as exc:
            raise BundleError(f"tensor {T_SOLVENT_PROBE}: {exc}") from None
    slope = extras.get(T_DISPERSION_SLOPE)
    if slope is not None and (tuple(slope.shape) != (n_cont,) or not np.isfinite(slope).all()):
        raise BundleError(f"tensor {T_DISPERSION_SLOPE} has shape {tuple(slope.shape)} or bad values; accepted: "
                          f"({n_cont},), finite")
    d = feature_size(cfg)
    shapes = {T_FEATURE_MEAN: (d,), T_FEATURE_PRECISION: (d, d)}
    for k in needed:
        if k == T_CONTINUOUS_INTERVAL:
            continue
        a = extras[k]
        if k in shapes:
            ok = tuple(a.shape) == shapes[k]
            accepted = f"shape {shapes[k]}"
        else:
            ok = a.size == 1 and float(a.reshape(-1)[0]) > 0
            accepted = "one value > 0"
        if not ok or not np.isfinite(a).all():
            raise BundleError(f"tensor {k} has shape {tuple(a.shape)} or bad values; accepted: {accepted}, finite")


def _check_qdots_metadata(meta: Mapping[str, Any], cfg: Mapping[str, Any]) -> None:
    """The metadata a quantum-dot sizer holds besides its network: its Q grid and classes, as its config."""
    missing = [k for k in QDOTS_METADATA if k not in meta]
    if missing:
        raise BundleError(f"bundle metadata lacks {missing}")
    try:
        grid = QGrid.from_dict(meta["q_grid"])
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"bad network config or Q grid in the metadata ({exc})") from None
    if grid.n_points != cfg["n_points"]:
        raise BundleError(f"the Q grid has {grid.n_points} points but the network takes {cfg['n_points']}")
    for key in ("size_classes_nm", "dispersion_classes"):
        if [float(v) for v in meta[key]] != cfg[key]:
            raise BundleError(f"metadata {key} {meta[key]} differ from the network config's {cfg[key]}")


def jsonable(obj: Any) -> Any:
    """NumPy scalars/arrays, Paths, tuples and QGrids to plain JSON types (recursively); ValueError for a non-finite
    number (bundle metadata is strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, QGrid):
        return obj.to_dict()
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite number {obj} in metadata")
    return obj
