"""The network architectures a bundle can hold, by the name in its config (``network.architecture``).

- ``"QDotsNet"`` (bundles without the key: the shipped quantum-dot sizer): :mod:`.engine` / :mod:`.network`;
- ``"cluster-cnn"`` (shape + size of metal nanoclusters from SAXS + WAXS): :mod:`.cluster_engine` /
  :mod:`.cluster_network`.

Each gives its config check, the names and shapes of its stored weights, a NumPy evaluator (no PyTorch) and a
torch module, and the extra tensors its bundles must hold. Imports are lazy, so reading a bundle loads only what
its architecture needs, and never torch.
"""
from __future__ import annotations

from typing import Any, Mapping

QDOTS_CNN = "QDotsNet"
CLUSTER_CNN = "cluster-cnn"
ARCHITECTURES = (QDOTS_CNN, CLUSTER_CNN)
#: Temperature of a cluster model's family logits (fitted on held-out simulations).
T_SHAPE_TEMPERATURE = "calibration.temperature_shape"
#: Optional (K,): widening of a cluster model's calibrated standard deviations with its estimated dispersion
#: (models.continuous.widened_std); bundles without it widen nothing.
T_DISPERSION_SLOPE = "calibration.continuous_dispersion_slope"
#: The network output behind each value a task can declare, and whether the output is the value's logarithm.
VALUE_OUTPUTS: dict[str, tuple[str, bool]] = {
    "size_nm": ("log_mean_diameter_nm", True), "size_volume_nm": ("log_volume_diameter_nm", True),
    "dispersion": ("dispersion", False), "strain": ("strain", False)}


def architecture_of(cfg: Mapping[str, Any]) -> str:
    """The architecture a network config names (default ``QDotsNet``); ValueError for an unknown one."""
    name = cfg.get("architecture", QDOTS_CNN) if isinstance(cfg, Mapping) else None
    if name not in ARCHITECTURES:
        raise ValueError(f"network architecture {name!r}; accepted: {', '.join(ARCHITECTURES)}")
    return name


def check_network_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The checked, completed config of any architecture (ValueError when it is bad)."""
    if architecture_of(cfg) == CLUSTER_CNN:
        from .cluster_engine import check_cluster_config

        return check_cluster_config(cfg)
    from .engine import check_config

    return check_config(cfg)


def state_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the stored weights of a checked config."""
    if architecture_of(cfg) == CLUSTER_CNN:
        from .cluster_engine import cluster_state_dict_shapes

        return cluster_state_dict_shapes(cfg)
    from .engine import state_dict_shapes

    return state_dict_shapes(cfg)


def numpy_network(cfg: Mapping[str, Any], weights: Mapping[str, Any]) -> Any:
    """The network evaluated with NumPy."""
    if architecture_of(cfg) == CLUSTER_CNN:
        from .cluster_engine import NumpyClusterNet

        return NumpyClusterNet(cfg, weights)
    from .engine import NumpyQDotsNet

    return NumpyQDotsNet(cfg, weights)


def torch_network(cfg: Mapping[str, Any]) -> Any:
    """An untrained torch module of the config (weights are loaded by the caller)."""
    if architecture_of(cfg) == CLUSTER_CNN:
        from .cluster_network import ClusterNet

        return ClusterNet(cfg)
    from .network import QDotsNet

    return QDotsNet(cfg)


def task_mismatch(cfg: Mapping[str, Any], task: Any) -> str:
    """Why a cluster network cannot answer ``task`` ("" when it can): its classes must be the network's families,
    each value one of its continuous outputs, the input its number of points, and the size classes say what sizes
    it knows."""
    if architecture_of(cfg) != CLUSTER_CNN:
        return ""
    if task.input.kind != "saxs-waxs" or task.input.spacing != "log":
        return f"the task reads {task.input.kind} on a {task.input.spacing} grid; a cluster network reads saxs-waxs, log"
    if task.input.n_points != cfg["n_points"]:
        return f"the task's input has {task.input.n_points} points but the network takes {cfg['n_points']}"
    if [list(t.labels) for t in task.classes] != [list(cfg["families"])]:
        return f"the task's classes {[list(t.labels) for t in task.classes]} are not the network's families {cfg['families']}"
    missing = [t.name for t in task.values if VALUE_OUTPUTS.get(t.name, (t.name,))[0] not in cfg["continuous_targets"]]
    if missing:
        return f"the task's values {missing} are not among the network's outputs {cfg['continuous_targets']}"
    if len(task.size_classes_nm) < 2:
        return "the task has fewer than two size classes (what sizes the model knows)"
    return ""


def feature_size(cfg: Mapping[str, Any]) -> int:
    """Length of the feature vector the out-of-distribution statistics are kept over."""
    if architecture_of(cfg) == CLUSTER_CNN:
        return 2 * int(cfg["hidden"])  # the two branches' dense features
    return int(cfg["filters"][-1])


def required_tensors(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The calibration tensors a bundle of this architecture holds (besides the out-of-distribution ones)."""
    if architecture_of(cfg) == CLUSTER_CNN:
        return (T_SHAPE_TEMPERATURE, "calibration.continuous_interval")
    return ("calibration.temperature_size", "calibration.temperature_dispersion")
