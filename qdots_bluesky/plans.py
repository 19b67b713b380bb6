"""Bluesky plans for in-situ quantum-dot synthesis experiments.

Plans only move and read devices and describe the experiment in the start document; sizing is
done by a separate subscriber (the live sizing callback), which finds the pattern through the
``qdots_pattern_key`` hint (and the x axis through ``qdots_x_key`` / ``x_unit`` / ``wavelength``).

The annotations are evaluated (no ``from __future__ import annotations``): the Bluesky queue server
validates queued plan parameters against them and cannot resolve names such as ``Any`` from strings.
"""

from typing import Any, Mapping

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

from .units import XUnit

__all__ = ["insitu_synthesis", "detector_metadata"]


def _config_value(device, attr: str):
    sig = getattr(device, attr, None)
    if sig is None or not hasattr(sig, "get"):
        return None
    try:
        return sig.get()
    except Exception:  # noqa: BLE001 - metadata is best effort
        return None


def detector_metadata(detector) -> dict[str, Any]:
    """Start-document hints describing a WAXS detector's data keys and x axis.

    Uses ``detector.qdots_metadata()`` when the detector has it (the simulated
    :class:`~qdots_bluesky.sim.beamline.devices.WaxsDetector` does); otherwise takes ``<name>_intensity``
    as the pattern and the ``tth`` / ``q`` / ``wavelength`` / ``solvent`` signals when present.
    """
    getter = getattr(detector, "qdots_metadata", None)
    if callable(getter):
        return dict(getter())
    md: dict[str, Any] = {"qdots_pattern_key": f"{detector.name}_intensity"}
    x_unit = _config_value(detector, "x_unit")
    for unit in ((x_unit,) if x_unit in XUnit.choices() else XUnit.choices()):
        sig = getattr(detector, unit, None)
        if sig is not None:
            md["qdots_x_key"] = sig.name
            md["x_unit"] = unit
            break
    for key in ("wavelength", "solvent", "material"):
        value = _config_value(detector, key)
        if value is not None:
            md[key] = value
    if "wavelength" in md:
        md["wavelength_units"] = "A"
    return md


def insitu_synthesis(detector, reactor, num: int, delay: float, *, temperature: float | None = None,
                     precursor: float | None = None, inject: bool = True, md: Mapping[str, Any] | None = None):
    """Start a hot-injection synthesis and record ``num`` WAXS patterns, ``delay`` seconds apart.

    Steps: set the reactor ``temperature`` (deg C) and ``precursor`` (mmol/L) when given, open a
    run, inject (write 1 to ``reactor.injection``; ``inject=False`` follows a reaction already
    under way), then ``num`` times trigger and read the reactor and the detector into the
    'primary' stream, waiting ``delay`` seconds after each reading but the last (so readings
    start about delay + a few ms apart with the simulated detector). The reactor is triggered
    first, so its truth in an event is the state the pattern was computed from.

    Start metadata: plan_name, plan_args, detectors, num_points, num_intervals, a 'time'
    dimension hint, sample (material, form, synthesis), solvent, wavelength (A), x_unit,
    ``qdots_pattern_key`` (the intensity data key), ``qdots_x_key`` (the x-axis configuration
    key), ``qdots_truth_keys`` (reactor truth keys), plus ``md``, which overrides any of them.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive integer number of readings, got {num!r}")
    try:
        delay = float(delay)
    except (TypeError, ValueError):
        raise ValueError(f"delay must be a number of seconds >= 0, got {delay!r}") from None
    if not delay >= 0 or delay == float("inf"):
        raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")

    devices = [reactor, detector]
    det_md = detector_metadata(detector)
    truth_keys = [getattr(reactor, a).name for a in ("true_size", "true_dispersion", "concentration", "elapsed")
                  if hasattr(reactor, a)]
    _md: dict[str, Any] = {
        "plan_name": "insitu_synthesis",
        "plan_args": {"detector": repr(detector), "reactor": repr(reactor), "num": num, "delay": delay,
                      "temperature": temperature, "precursor": precursor, "inject": inject},
        "detectors": [d.name for d in devices],
        "num_points": num,
        "num_intervals": num - 1,
        "hints": {"dimensions": [(("time",), "primary")]},
        "sample": {"material": det_md.get("material", "PbS"), "form": "colloidal quantum dots",
                   "synthesis": "hot injection", "solvent": det_md.get("solvent")},
        "experiment": "in-situ WAXS of quantum-dot synthesis",
        "reactor_temperature": temperature if temperature is not None else _config_value(reactor, "temperature"),
        "reactor_precursor": precursor if precursor is not None else _config_value(reactor, "precursor"),
        "qdots_truth_keys": truth_keys,
        **det_md,
    }
    _md.update(md or {})

    def steps():
        if inject:
            yield from bps.mv(reactor.injection, 1)
        for i in range(num):
            if i:
                yield from bps.sleep(delay)
            yield Msg("checkpoint")
            yield from bps.trigger_and_read(devices)

    if temperature is not None:
        yield from bps.mv(reactor.temperature, temperature)
    if precursor is not None:
        yield from bps.mv(reactor.precursor, precursor)

    @bpp.stage_decorator(devices)
    @bpp.run_decorator(md=_md)
    def inner():
        return (yield from steps())

    return (yield from inner())
