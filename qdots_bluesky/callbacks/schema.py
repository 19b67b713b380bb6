"""The ``qdots_size`` stream: its name, data keys (dtype, shape, units), event data and configuration.

One place for the output layout of :class:`~.live_sizer.LiveSizer`, so that the sizer, the replay
and readers agree. Units: diameters in nm, dispersion/strain dimensionless (dispersion is the
relative standard deviation of a log-normal, strain the fractional lattice change), latency in ms,
wavelength in A.
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

from ..estimate import SIZE_FLOAT_KEYS
from ..models.task import Task, pbs_size_task

#: Name of the stream the sizer adds to each run.
STREAM_NAME = "qdots_size"
#: Name of the sizer's object in the descriptor (configuration, object_keys, hints).
SIZER_OBJECT = "qdots_sizer"
STATUS_OK, STATUS_FLAGGED, STATUS_ERROR = "ok", "flagged", "error"
#: Data keys that hold one float each (NaN when unknown or on error), in the order of SizeEstimate.
FLOAT_KEYS = SIZE_FLOAT_KEYS
#: Keys of a refining sizer (``LiveSizer(refine=True)``): the DSE refinement's values (NaN where not refined)
#: -> the refinement's ``to_dict()`` key, units and description.
REFINED_KEYS: dict[str, tuple[str, str | None, str]] = {
    "refined_size_nm": ("size_nm", "nm", "DSE refinement: number-weighted mean diameter"),
    "refined_size_std_nm": ("size_std_nm", "nm", "DSE refinement: e.s.d. of refined_size_nm (profile over the "
                                                 "dispersion)"),
    "refined_size_volume_nm": ("size_volume_nm", "nm", "DSE refinement: volume-weighted mean diameter"),
    "refined_size_volume_std_nm": ("size_volume_std_nm", "nm", "DSE refinement: e.s.d. of refined_size_volume_nm"),
    "refined_dispersion": ("dispersion", "dimensionless", "DSE refinement: relative standard deviation of the "
                                                         "log-normal"),
    "refined_dispersion_std": ("dispersion_std", "dimensionless", "DSE refinement: e.s.d. of refined_dispersion"),
    "refined_strain": ("strain", "dimensionless", "DSE refinement: fractional change of the lattice parameter"),
    "refined_strain_std": ("strain_std", "dimensionless", "DSE refinement: e.s.d. of refined_strain"),
    "rwp": ("rwp", "dimensionless", "DSE refinement: weighted-profile R factor (fraction, not %)"),
}
#: Fields shown by default (descriptor hints).
HINT_FIELDS = ["size_nm", "size_std_nm", "outcome", "status"]
#: What the predictor answered (SizeEstimate.status), or "error" when the pattern could not be sized.
OUTCOMES = ("sized", "no_nanocrystals", "above_range", "below_range", "error")


def _number_key(units: str | None, description: str) -> dict[str, Any]:
    return {"dtype": "number", "shape": [], "dtype_numpy": "<f8", "units": units, "source": f"{SIZER_OBJECT}: {description}"}


def output_keys(layout: Task | Sequence[float], refine: bool = False) -> dict[str, dict[str, Any]]:
    """Descriptor data keys of the output stream for the loaded bundle's task (``layout``: a
    :class:`~qdots_bluesky.models.task.Task`, or the size classes in nm of a quantum-dot sizer), with the
    refined keys (:data:`REFINED_KEYS` and ``refined``) where ``refine``; ``object_name`` is not set (the sizer
    adds it). The quantum-dot size task keeps its published layout; any other task publishes its targets
    (:func:`task_keys`)."""
    task = layout if isinstance(layout, Task) else pbs_size_task(layout)
    keys = _network_keys(task.size_classes_nm) if task.is_pbs_preset else task_keys(task)
    if refine:
        for key, (_, units, text) in REFINED_KEYS.items():
            keys[key] = _number_key(units, text + " (NaN where not refined)")
        keys["refined"] = {"dtype": "integer", "shape": [], "dtype_numpy": "<i8", "units": None,
                           "source": f"{SIZER_OBJECT}: 1 where this pattern was refined, 0 where not (a worker "
                                     "behind the scan refines only the newest pattern of each batch)"}
        keys["refined_flags"] = _string_key("DSE refinement: its status where not sized (no_nanocrystals) and its "
                                            "flags (size_at_bound, poor_fit, ...), comma-separated; '' where none "
                                            "or not refined")
    return keys


def _string_key(description: str, **extra: Any) -> dict[str, Any]:
    return {"dtype": "string", "shape": [], "dtype_numpy": "<U0", "units": None, "source": f"{SIZER_OBJECT}: {description}",
            **extra}


def _common_keys() -> dict[str, dict[str, Any]]:
    """Keys of every task: outcome, status, flags, message, the source event and the latency."""
    return {k: v for k, v in _network_keys(()).items()
            if k in ("outcome", "status", "flags", "message", "source_seq_num", "source_uid", "latency_ms")}


def task_keys(task: Task) -> dict[str, dict[str, Any]]:
    """Data keys of a task's answers (:class:`~qdots_bluesky.estimate.TaskEstimate.record`): each value and its
    1-sigma uncertainty with the target's unit; each class target (and its groups) as the most probable label, its
    calibrated probability and the probabilities of every label; the size classes' probabilities; the
    out-of-distribution distance and the probability that particles are there."""
    keys: dict[str, dict[str, Any]] = {}
    for t in task.values:
        keys[t.name] = _number_key(t.unit, t.description)
        keys[t.std_key()] = _number_key(t.unit, f"uncertainty (1 sigma) of {t.name}")
    for t in task.classes:
        sets = [(t.name, list(t.labels), t.description)]
        if t.groups:
            sets.append((t.group_name, t.group_labels(), f"{t.name} summed into {t.group_name} groups"))
        for name, labels, text in sets:
            keys[name] = _string_key(f"most probable {name} ({text}); '' where not sized", choices=labels + [""])
            keys[f"{name}_confidence"] = _number_key("dimensionless", f"calibrated probability of {name}")
            keys[f"{name}_probabilities"] = {"dtype": "array", "shape": [len(labels)], "dtype_numpy": "<f8",
                                             "units": "dimensionless", "dims": [f"{name}_label"], "labels": labels,
                                             "source": f"{SIZER_OBJECT}: calibrated probability of each {name} (labels)"}
    n = len(task.size_classes_nm)
    keys["size_class_nm"] = _number_key("nm", "most probable size class (number-weighted mean diameter)")
    keys["probabilities"] = {"dtype": "array", "shape": [n], "dtype_numpy": "<f8", "units": "dimensionless",
                             "dims": ["size_class"], "size_classes_nm": list(task.size_classes_nm),
                             "source": f"{SIZER_OBJECT}: probability of each size class (size_classes_nm)"}
    keys["ood_distance"] = _number_key("dimensionless", "Mahalanobis distance of the network features to training")
    keys["nanocrystal_probability"] = _number_key("dimensionless", "probability that the pattern holds particle "
                                                  "scattering (not solvent or background alone)")
    keys.update(_common_keys())
    return keys


def _network_keys(classes: Sequence[float]) -> dict[str, dict[str, Any]]:
    n = len(classes)
    return {
        "size_nm": _number_key("nm", "number-weighted mean diameter (continuous estimate; class-only models: "
                                     "probability-weighted over the size classes)"),
        "size_std_nm": _number_key("nm", "uncertainty (1 sigma) of size_nm"),
        "size_volume_nm": _number_key("nm", "volume-weighted mean diameter (NaN for class-only models)"),
        "size_volume_std_nm": _number_key("nm", "uncertainty (1 sigma) of size_volume_nm"),
        "dispersion_std": _number_key("dimensionless", "uncertainty (1 sigma) of the continuous dispersion"),
        "strain": _number_key("dimensionless", "fractional change of the lattice parameter from bulk"),
        "strain_std": _number_key("dimensionless", "uncertainty (1 sigma) of strain"),
        "size_class_nm": _number_key("nm", "most probable size class (mean diameter)"),
        "size_regression_nm": _number_key("nm", "regression-head estimate of the mean diameter"),
        "dispersion": _number_key("dimensionless", "relative standard deviation of the log-normal (continuous "
                                                   "estimate; class-only models: the most probable class)"),
        "dispersion_confidence": _number_key("dimensionless", "calibrated probability of the dispersion class"),
        "confidence": _number_key("dimensionless", "calibrated probability of the most probable size class"),
        "ood_distance": _number_key("dimensionless", "Mahalanobis distance of the network features to training"),
        "nanocrystal_probability": _number_key("dimensionless", "probability that the pattern holds nanocrystal "
                                               "scattering (not pure solvent or background)"),
        "probabilities": {"dtype": "array", "shape": [n], "dtype_numpy": "<f8", "units": "dimensionless",
                          "dims": ["size_class"], "size_classes_nm": list(classes),
                          "source": f"{SIZER_OBJECT}: calibrated probability of each size class (size_classes_nm)"},
        "outcome": {"dtype": "string", "shape": [], "dtype_numpy": "<U15", "units": None, "choices": list(OUTCOMES),
                    "source": f"{SIZER_OBJECT}: sized, no_nanocrystals (no size: pure solvent or background), "
                              "above_range / below_range (no size: beyond the trained sizes), or error"},
        "status": {"dtype": "string", "shape": [], "dtype_numpy": "<U7", "units": None,
                   "choices": [STATUS_OK, STATUS_FLAGGED, STATUS_ERROR], "source": f"{SIZER_OBJECT}: ok/flagged/error"},
        "flags": {"dtype": "string", "shape": [], "dtype_numpy": "<U0", "units": None,
                  "source": f"{SIZER_OBJECT}: flag names, comma separated"},
        "message": {"dtype": "string", "shape": [], "dtype_numpy": "<U0", "units": None,
                    "source": f"{SIZER_OBJECT}: error text, or the flags with their reasons"},
        "source_seq_num": {"dtype": "integer", "shape": [], "dtype_numpy": "<i8", "units": None,
                           "source": f"{SIZER_OBJECT}: seq_num of the source event"},
        "source_uid": {"dtype": "string", "shape": [], "dtype_numpy": "<U0", "units": None,
                       "source": f"{SIZER_OBJECT}: uid of the source event"},
        "latency_ms": _number_key("ms", "time from receiving the source event to the estimate"),
    }


#: Data keys of the ``qdots_size`` stream (with 17 size classes as an example of the array shape).
OUTPUT_KEYS = output_keys([2.0 + 0.5 * i for i in range(17)])


def event_data(result: Any, layout: int | Mapping[str, Any], seq_num: int, uid: str, latency_ms: float,
               refine: bool = False, refinement: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data of one output event: ``result`` is a SizeEstimate or TaskEstimate, or an error text (status
    "error", NaN numbers, empty labels); ``layout``: the stream's data keys (:func:`output_keys`), or the number
    of size classes of a quantum-dot sizer; ``seq_num``/``uid`` name the source event; ``latency_ms`` in ms; with
    ``refine`` the refined keys from ``refinement`` (a refinement's ``to_dict()``; None: not refined, NaN and
    ``refined`` 0)."""
    if isinstance(result, str):
        data: dict[str, Any] = {}
        if isinstance(layout, Mapping):
            for k, dk in layout.items():
                data[k] = ([math.nan] * dk["shape"][0] if dk["dtype"] == "array" else
                           math.nan if dk["dtype"] == "number" else "" if dk["dtype"] == "string" else None)
            data = {k: v for k, v in data.items() if v is not None}
        else:
            data.update({k: math.nan for k in FLOAT_KEYS}, probabilities=[math.nan] * int(layout))
        data.update(outcome="error", status=STATUS_ERROR, flags="", message=result)
    else:
        data = dict(result.record())  # every estimate publishes itself under its task's keys
        flags = list(result.flags)
        outcome = getattr(result, "status", "sized")
        data["outcome"] = outcome
        data["status"] = STATUS_FLAGGED if flags or outcome != "sized" else STATUS_OK
        data["flags"] = ",".join(flags)
        details = getattr(result, "flag_details", {}) or {}
        message = "; ".join(f"{f}: {details[f]}" if f in details else f for f in flags)
        if outcome != "sized":  # why there is no size, as the summary says it ("> 11.0 nm: larger than ...")
            message = result.no_size_reason() + (f"; {message}" if message else "")
        data["message"] = message
    data["source_seq_num"] = int(seq_num)
    data["source_uid"] = uid
    data["latency_ms"] = float(latency_ms)
    if refine:
        for key, (name, _, _) in REFINED_KEYS.items():
            value = None if refinement is None else refinement.get(name)
            data[key] = math.nan if value is None else float(value)
        data["refined"] = int(refinement is not None)
        notes = [] if refinement is None else list(refinement.get("flags") or [])
        if refinement is not None and refinement.get("status") not in (None, "sized"):
            notes.insert(0, str(refinement["status"]))
        data["refined_flags"] = ",".join(notes)
    return data


def configuration(info: dict[str, Any]) -> dict[str, Any]:
    """The descriptor configuration of the sizer object from flat ``info`` (model, device, chunk size,
    where the pattern was found): lists become arrays, ints integers, floats numbers, else strings."""
    now = time.time()
    data_keys = {}
    for k, v in info.items():
        if isinstance(v, list):
            dk = {"dtype": "array", "shape": [len(v)], "dtype_numpy": "<f8"}
        elif isinstance(v, bool) or isinstance(v, int):
            dk = {"dtype": "integer", "shape": [], "dtype_numpy": "<i8"}
        elif isinstance(v, float):
            dk = {"dtype": "number", "shape": [], "dtype_numpy": "<f8"}
        else:
            dk = {"dtype": "string", "shape": [], "dtype_numpy": "<U0"}
        dk["source"] = f"{SIZER_OBJECT}: {k}"
        dk["units"] = {"size_classes_nm": "nm", "wavelength": "angstrom", "instrument_gauss_fwhm_q": "1/angstrom",
                       "instrument_lorentz_fwhm_q": "1/angstrom"}.get(k)
        data_keys[k] = dk
    return {SIZER_OBJECT: {"data": dict(info), "timestamps": {k: now for k in info}, "data_keys": data_keys}}


def stored_chunk_size(descriptor: dict) -> int | None:
    """The chunk size a sizer recorded in the configuration of its ``qdots_size`` descriptor, if any."""
    value = ((descriptor.get("configuration") or {}).get(SIZER_OBJECT) or {}).get("data", {}).get("chunk_size")
    if isinstance(value, (int, float)) and int(value) >= 1:
        return int(value)
    return None
