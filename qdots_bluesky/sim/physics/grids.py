"""Parsing and checking the x grids of simulations: 2theta (deg) or Q (1/A)."""
from __future__ import annotations

import numpy as np

from ...units import check_wavelength, tth_to_q


def parse_range(text: str, what: str) -> tuple[float, float, float]:
    """'START:STOP:X' -> three floats; ValueError naming the option otherwise."""
    parts = str(text).split(":")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise ValueError(f"{what} must be START:STOP:{'STEP' if what == '--tth' else 'N'} with three numbers, got {text!r}")
    return values  # type: ignore[return-value]


def tth_grid(start_deg: float, stop_deg: float, step_deg: float) -> np.ndarray:
    """2theta values (deg) from start to stop (inclusive within rounding) in steps."""
    if not (step_deg > 0 and stop_deg > start_deg):
        raise ValueError(f"2theta grid must increase: START < STOP and STEP > 0, got {start_deg}:{stop_deg}:{step_deg}")
    if start_deg <= 0 or stop_deg > 180:
        raise ValueError(f"2theta must lie in (0, 180] degrees, got {start_deg} to {stop_deg}")
    n = int(np.floor((stop_deg - start_deg) / step_deg + 1e-9)) + 1
    if n < 2 or n > 2_000_000:
        raise ValueError(f"2theta grid {start_deg}:{stop_deg}:{step_deg} gives {n} points; accepted: 2 to 2,000,000")
    return start_deg + step_deg * np.arange(n)


def q_grid(start: float, stop: float, n_points: float) -> np.ndarray:
    """N equispaced Q values (1/A) from start to stop."""
    if n_points != int(n_points) or not 2 <= n_points <= 2_000_000:
        raise ValueError(f"the number of Q points must be an integer from 2 to 2,000,000, got {n_points}")
    if not 0 < start < stop:
        raise ValueError(f"Q grid must increase from a positive start: 0 < START < STOP (1/A), got {start}:{stop}")
    if stop > 100:
        raise ValueError(f"Q up to {stop} 1/A is beyond any X-ray experiment; accepted: up to 100 1/A")
    return np.linspace(start, stop, int(n_points))


def simulation_grid(tth: str | None, q: str | None, wavelength_a: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(Q, 2theta or None) from the command-line grid options; Q 1:15:5004 when neither is given."""
    if tth and q:
        raise ValueError("give either --tth or --q, not both")
    if tth:
        if wavelength_a is None:
            raise ValueError("--tth needs --wavelength (in angstrom) to convert 2theta to Q")
        check_wavelength(wavelength_a)
        t = tth_grid(*parse_range(tth, "--tth"))
        return tth_to_q(t, wavelength_a), t
    return q_grid(*parse_range(q or "1:15:5004", "--q")), None
