"""Finding the pattern in a run: pure functions of the start document, a descriptor and the options.

By option (``pattern_key``, ``x_key``, ``x_unit``, ``wavelength``), else from the start document
(``qdots_pattern_key``, ``qdots_x_key``, ``qdots_x_unit`` or ``x_unit``, ``wavelength``), else from the
descriptor: a 1D array data key with >= 50 points (preferring names with "intensity", "waxs",
"pattern"); its x axis from the device configuration (``<name>_tth`` in degrees or ``<name>_q``
in 1/A, same length), the unit from ``<name>_x_unit`` or the suffix, the wavelength (A) from a
configuration key ``<name>_wavelength`` (in nm when its units say so) or the start document's
``wavelength``. An x axis may also be a data key of the event itself (``x_key`` naming a data key).

:func:`find_source` gives a :class:`PatternSource` (with ``problem`` set when no event of the
stream can be sized) or None (no pattern in this descriptor); :func:`extract_pattern` checks one
event's data against it and returns (x, y) or raises :class:`PatternError`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from event_model.documents import EventDescriptor, RunStart

logger = logging.getLogger(__name__)

#: The fewest points a data key must have to be taken for a pattern.
MIN_PATTERN_POINTS = 50
#: Start-document keys the sizer reads.
START_PATTERN_KEY, START_X_KEY, START_X_UNIT, START_WAVELENGTH = (
    "qdots_pattern_key", "qdots_x_key", "qdots_x_unit", "wavelength")
#: Also read for the x unit (written by :func:`qdots_bluesky.plans.insitu_synthesis`).
START_X_UNIT_ALT = "x_unit"

_TTH_UNITS = {"tth", "2theta", "two_theta", "deg", "degree", "degrees", "2theta_deg", "tth_deg"}
_Q_UNITS = {"q", "1/a", "a^-1", "a-1", "1/angstrom", "angstrom^-1", "inverse angstrom", "q_inv_angstrom", "1/å", "å^-1"}
_TTH_SUFFIXES = ("_tth", "_2theta", "_two_theta")
_Q_SUFFIXES = ("_q",)
_PREFERRED_WORDS = ("intensity", "waxs", "pattern", "xrd", "saxs", "counts")


class PatternError(ValueError):
    """An event whose pattern cannot be sized; the message goes to the output event."""


@dataclass(frozen=True)
class DiscoveryOptions:
    """What the user fixed: data key of the pattern and of x, x unit ("tth"/"q"), wavelength (A), stream."""

    pattern_key: str | None = None
    x_key: str | None = None
    x_unit: str | None = None
    wavelength: float | None = None
    source_stream: str | None = None


@dataclass
class PatternSource:
    """Where a descriptor's pattern and x axis are. ``problem``: why no event of it can be sized."""

    stream: str
    pattern_key: str
    x: np.ndarray | None = None
    x_key: str | None = None
    x_in_event: bool = False
    x_unit: str | None = None
    wavelength: float | None = None
    problem: str | None = None

    def describe(self) -> str:
        """One line for the log: key, stream, x axis, unit, wavelength (A)."""
        unit = {"tth": "2theta (deg)", "q": "Q (1/A)"}.get(self.x_unit or "", "?")
        wl = f", wavelength {self.wavelength:g} A" if self.wavelength else ""
        where = "event data" if self.x_in_event else "configuration"
        return f"pattern '{self.pattern_key}' in stream '{self.stream}', x '{self.x_key}' ({unit}, from {where}{wl})"


def parse_unit(text: Any) -> str | None:
    """'tth' (2theta, degrees) or 'q' (1/A) for the many spellings of either; None if unknown."""
    if not isinstance(text, str):
        return None
    t = text.strip().lower()
    return "tth" if t in _TTH_UNITS else "q" if t in _Q_UNITS else None


def pattern_key(start: Mapping[str, Any], options: DiscoveryOptions) -> str | None:
    """The pattern data key fixed by option or start document (None: detect it)."""
    return options.pattern_key or start.get(START_PATTERN_KEY)


def is_pattern_key(dk: Mapping[str, Any]) -> bool:
    """A descriptor data key that can hold a pattern: a 1D array of >= MIN_PATTERN_POINTS (or unknown) points."""
    shape = dk.get("shape") or []
    return (dk.get("dtype") == "array" and len(shape) == 1
            and (shape[0] is None or int(shape[0]) >= MIN_PATTERN_POINTS))


def _length(value: Any) -> int:
    try:
        return len(value) if not isinstance(value, (str, bytes)) else 0
    except TypeError:
        return 0


def find_source(start: RunStart | Mapping[str, Any], desc: EventDescriptor | Mapping[str, Any],
                options: DiscoveryOptions = DiscoveryOptions()) -> PatternSource | None:
    """Where the pattern of descriptor ``desc`` is: None when it has none (or is not the chosen stream)."""
    stream = desc.get("name", "primary")
    if options.source_stream is not None and stream != options.source_stream:
        return None
    data_keys: Mapping[str, Any] = desc.get("data_keys", {})
    key = pattern_key(start, options)
    if key is not None:
        if key not in data_keys:
            return None
    else:
        candidates = [k for k, dk in data_keys.items() if is_pattern_key(dk)]
        if not candidates:
            return None
        key = sorted(candidates, key=lambda k: (not any(w in k.lower() for w in _PREFERRED_WORDS),
                                                candidates.index(k)))[0]
        if len(candidates) > 1:
            logger.info("stream '%s': several 1D data keys %s; sizing '%s' (set pattern_key= to choose)",
                        stream, candidates, key)
    source = PatternSource(stream=stream, pattern_key=key)
    dk = data_keys[key]
    shape = list(dk.get("shape") or [])
    n = shape[0] if len(shape) == 1 else None
    if dk.get("external"):
        source.problem = (f"'{key}' is external data ({dk['external']}); the sizer needs the pattern in the "
                          "event (fill it upstream)")
        return source
    _find_axis(start, desc, source, n, options)
    return source


def _find_axis(start: Mapping[str, Any], desc: Mapping[str, Any], source: PatternSource, n: int | None,
               options: DiscoveryOptions) -> None:
    key = source.pattern_key
    data_keys: Mapping[str, Any] = desc.get("data_keys", {})
    configuration: Mapping[str, Any] = desc.get("configuration", {}) or {}
    owner = data_keys[key].get("object_name") or next(
        (obj for obj, keys in (desc.get("object_keys") or {}).items() if key in keys), None)
    order = ([owner] if owner in configuration else []) + [o for o in configuration if o != owner]
    config = [(obj, configuration[obj].get("data", {}) or {}, configuration[obj].get("data_keys", {}) or {})
              for obj in order]

    x_key = options.x_key or start.get(START_X_KEY)
    x_value, x_units = None, None
    if x_key is not None:
        for _, data, dks in config:
            if x_key in data:
                x_value, x_units = data[x_key], (dks.get(x_key) or {}).get("units")
                break
        else:
            if x_key in data_keys:
                source.x_in_event = True
                x_units = data_keys[x_key].get("units")
            else:
                source.problem = (f"x axis '{x_key}' is neither a configuration value nor a data key of "
                                  f"stream '{source.stream}'")
                return
    else:
        for _, data, dks in config:
            for k, v in data.items():
                if k.lower().endswith(_TTH_SUFFIXES + _Q_SUFFIXES) and _length(v) >= MIN_PATTERN_POINTS \
                        and (n is None or _length(v) == n):
                    x_key, x_value, x_units = k, v, (dks.get(k) or {}).get("units")
                    break
            if x_key:
                break
        if x_key is None:
            source.problem = (f"no x axis for '{key}': expected a configuration value '<name>_tth' (2theta, deg) "
                              f"or '<name>_q' (Q, 1/A) with {n or 'as many'} points, or set x_key=")
            return
    source.x_key = x_key

    # unit: option, start 'qdots_x_unit', the key's suffix, a configuration '<name>_x_unit', the key's
    # units, start 'x_unit'
    low = x_key.lower()
    unit = (options.x_unit or parse_unit(start.get(START_X_UNIT))
            or ("tth" if low.endswith(_TTH_SUFFIXES) else "q" if low.endswith(_Q_SUFFIXES) else None))
    if unit is None:
        for _, data, _ in config:
            for k, v in data.items():
                if k.lower().endswith("_x_unit") and isinstance(v, str) and parse_unit(v):
                    unit = parse_unit(v)
                    break
            if unit:
                break
    unit = unit or parse_unit(x_units) or parse_unit(start.get(START_X_UNIT_ALT))
    if unit is None:
        source.problem = f"unit of the x axis '{x_key}' unknown; set x_unit='tth' (2theta, deg) or 'q' (1/A)"
        return
    source.x_unit = unit

    # wavelength (A)
    wavelength = options.wavelength
    if wavelength is None and unit == "tth":
        for _, data, dks in config:
            for k, v in data.items():
                if k.lower().endswith("_wavelength") or k.lower() == "wavelength":
                    try:
                        wavelength = float(v) * (10.0 if (dks.get(k) or {}).get("units") == "nm" else 1.0)
                    except (TypeError, ValueError):
                        continue
                    break
            if wavelength is not None:
                break
        if wavelength is None and start.get(START_WAVELENGTH) is not None:
            try:
                wavelength = float(start[START_WAVELENGTH])
            except (TypeError, ValueError):
                pass
        if wavelength is None:
            source.problem = (f"2theta x axis '{x_key}' but no wavelength: expected a configuration value "
                              "'<name>_wavelength' (A), 'wavelength' in the start metadata, or wavelength=")
            return
    source.wavelength = wavelength

    if not source.x_in_event:
        try:
            x = np.asarray(x_value, dtype=np.float64)
        except (TypeError, ValueError):
            source.problem = f"x axis '{x_key}' is not numeric"
            return
        if x.ndim != 1:
            source.problem = f"x axis '{x_key}' has shape {x.shape}; expected a 1D array"
            return
        source.x = x


def extract_pattern(source: PatternSource, data: Mapping[str, Any], seq_num: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of one event's ``data`` as float64 arrays; raises PatternError saying what is wrong with it."""
    if source.problem:
        raise PatternError(source.problem)
    key = source.pattern_key
    if key not in data:
        raise PatternError(f"event {seq_num} has no data key '{key}' (it has {sorted(data)})")
    value = data[key]
    if isinstance(value, str):
        raise PatternError(f"'{key}' holds a string ({value[:40]!r}), e.g. an unfilled external reference; "
                           "expected a 1D numeric array")
    try:
        y = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PatternError(f"'{key}' is not a numeric array ({exc})") from None
    if y.ndim != 1:
        raise PatternError(f"'{key}' has shape {y.shape}; expected a 1D array (one intensity per x value)")
    if source.x_in_event:
        if source.x_key not in data:
            raise PatternError(f"event {seq_num} has no x axis '{source.x_key}'")
        try:
            x = np.asarray(data[source.x_key], dtype=np.float64)
        except (TypeError, ValueError):
            raise PatternError(f"x axis '{source.x_key}' is not numeric") from None
    else:
        x = source.x
    if y.size != x.size:
        raise PatternError(f"'{key}' has {y.size} points but the x axis '{source.x_key}' has {x.size}; "
                           "expected one intensity per x value")
    bad = ~np.isfinite(y)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        tail = (" (a NaN tail: this pattern was probably shorter than the others and padded when stored)"
                if first > 0 and np.isnan(y[first:]).all() else "")
        raise PatternError(f"'{key}' has {int(bad.sum())} NaN or infinite values (first at index {first}); "
                           f"expected finite intensities{tail}")
    if not y.any():
        raise PatternError(f"'{key}' is all zeros (no signal: shutter closed, detector not counting?)")
    return x, y
