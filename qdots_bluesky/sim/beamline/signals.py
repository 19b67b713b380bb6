"""Soft ophyd signals of the simulated beamline devices (:mod:`.devices`): no EPICS, but describe() with dtype, shape,
dtype_numpy and units like hardware, read-only truth the owning device publishes, set points checked against limits,
choices and booleans checked before set() returns a status.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
from ophyd import Signal
from ophyd.status import DeviceStatus
from ophyd.utils import LimitError, ReadOnlyError

__all__ = ["BoolSignal", "ChoiceSignal", "ReadOnlySignal", "SetpointSignal", "SimSignal", "describe_value",
           "finished_status"]


def describe_value(value) -> dict:
    """The describe() fields of a value: dtype (string, array, boolean, integer, number), shape, dtype_numpy."""
    arr = np.asarray(value)
    if isinstance(value, str):
        return {"dtype": "string", "shape": []}
    if arr.ndim > 0:
        return {"dtype": "array", "shape": list(arr.shape), "dtype_numpy": arr.dtype.str}
    if arr.dtype.kind == "b":
        return {"dtype": "boolean", "shape": [], "dtype_numpy": arr.dtype.str}
    if arr.dtype.kind in "iu":
        return {"dtype": "integer", "shape": [], "dtype_numpy": arr.dtype.str}
    return {"dtype": "number", "shape": [], "dtype_numpy": np.dtype(float).str}


class SimSignal(Signal):
    """A soft signal whose describe() gives dtype, shape, dtype_numpy (e.g. '<f8') and units."""

    def __init__(self, *args, units: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._units = units

    def describe(self):
        desc = {"source": f"SIM:{self.name}", **describe_value(self._readback)}
        if self._units:
            desc["units"] = self._units
        return {self.name: desc}


class ReadOnlySignal(SimSignal):
    """Read-only to users; the owning device publishes new values with _publish()."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._metadata.update(write_access=False)

    def put(self, value, **kwargs):
        raise ReadOnlyError(f"{self.name} is read-only (simulated truth or fixed configuration)")

    def set(self, value, **kwargs):
        raise ReadOnlyError(f"{self.name} is read-only (simulated truth or fixed configuration)")

    def _publish(self, value, timestamp: float | None = None) -> None:
        Signal.put(self, value, timestamp=timestamp, force=True)


class SetpointSignal(SimSignal):
    """A settable number with limits; set() checks before it returns a status (ValueError otherwise)."""

    def __init__(self, *args, limits: tuple[float, float] | None = None, **kwargs):
        self._limits = limits
        super().__init__(*args, **kwargs)

    @property
    def limits(self):
        return self._limits if self._limits is not None else (0, 0)

    def check_value(self, value):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} needs a number, got {value!r}") from None
        if not np.isfinite(v):
            raise ValueError(f"{self.name} needs a finite number, got {value!r}")
        if self._limits is not None and not self._limits[0] <= v <= self._limits[1]:
            raise LimitError(f"{self.name}={value!r} {self._units or ''} is outside the accepted range "
                             f"{self._limits[0]} to {self._limits[1]} {self._units or ''}".replace("  ", " "))

    def set(self, value, **kwargs):
        self.check_value(value)
        return super().set(value, **kwargs)


class ChoiceSignal(SimSignal):
    """A settable string from a fixed set of choices."""

    def __init__(self, *args, choices: Iterable[str] = (), **kwargs):
        self._choices = tuple(choices)
        super().__init__(*args, **kwargs)

    def check_value(self, value):
        if not isinstance(value, str) or value not in self._choices:
            raise ValueError(f"{self.name}={value!r}; accepted: {', '.join(self._choices)}")

    def set(self, value, **kwargs):
        self.check_value(value)
        return super().set(value, **kwargs)


class BoolSignal(SimSignal):
    """A settable True or False."""

    def check_value(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{self.name} needs True or False, got {value!r}")

    def set(self, value, **kwargs):
        self.check_value(value)
        return super().set(value, **kwargs)


def finished_status(device) -> DeviceStatus:
    """A status of device that is already done (a trigger that completes at once)."""
    st = DeviceStatus(device)
    st.set_finished()
    return st


def acquire_in_thread(device, lock, acquire) -> DeviceStatus:
    """A status that completes once ``acquire()`` (computing and publishing a pattern) has run under ``lock`` in a
    worker thread, or that carries its exception: a simulated detector's trigger, which must not block the
    RunEngine."""
    import threading

    status = DeviceStatus(device)

    def work():
        try:
            with lock:
                acquire()
        except Exception as exc:  # noqa: BLE001 - reported through the status
            status.set_exception(exc)
        else:
            status.set_finished()

    threading.Thread(target=work, name=f"{device.name}-acquire", daemon=True).start()
    return status
