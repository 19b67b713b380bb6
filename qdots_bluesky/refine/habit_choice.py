"""``habit='auto'``: one refinement per habit of the cluster series, the best-fitting one kept.

The habit (:mod:`~qdots_bluesky.sim.physics.habits`) changes the peak profiles at equal volume, and a sphere series
reads a faceted population's profiles as dispersion or instrument broadening. Where the habit is not known (TEM), the
pattern is refined with every habit the structure allows; the result with dots of the lowest reduced chi^2 is kept,
and every habit's reduced chi^2 is reported beside it (``habit_reduced_chi2``), so that a user sees whether the data
prefer one habit clearly or several fit alike (``habit_uncertain`` where another fits within ``HABIT_TIE``). For sparse
counts each habit is weighted by its own model (Pearson's chi^2), so near-ties mean even less there.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ..sim.physics.habits import HABITS, check_habit
from ..sim.physics.materials import get_structure
from .result import RefinementResult

__all__ = ["habits_of", "refine_every_habit", "HABIT_TIE"]

#: Habits whose reduced chi^2 lies within this fraction of the best one's fit alike: ``habit_uncertain``.
HABIT_TIE = 0.05


def habits_of(material: str) -> list[str]:
    """The habits a material's structure allows: every one for a cubic lattice, else the sphere series only."""
    structure = get_structure(material)
    allowed = []
    for habit in HABITS:
        try:
            allowed.append(check_habit(habit, structure))
        except ValueError:
            continue
    return allowed


def refine_every_habit(refine: Callable[..., RefinementResult], x: Any, y: Any, sigma: Any, *, material: str,
                       **options: Any) -> RefinementResult:
    """``refine(x, y, sigma, material=material, habit=h, **options)`` for every habit of :func:`habits_of`; the sized
    result of the lowest ``reduced_chi2_with_dots`` (the sphere series' result where none is sized), with
    ``habit_reduced_chi2`` of every habit, the evaluations of all and the total time."""
    t0 = time.perf_counter()
    results = {h: refine(x, y, sigma, material=material, habit=h, **options) for h in habits_of(material)}
    sized = [r for r in results.values() if r.status == "sized"]
    best = min(sized, key=lambda r: r.reduced_chi2_with_dots) if sized else results["sphere"]
    best.habit_reduced_chi2 = {h: float(r.reduced_chi2_with_dots) for h, r in results.items()}
    ties = [r for r in sized if r is not best and r.reduced_chi2_with_dots <= (1 + HABIT_TIE) * best.reduced_chi2_with_dots]
    if ties:
        best.flags.append("habit_uncertain")
        best.flag_details["habit_uncertain"] = "; ".join(
            f"{r.habit}: reduced chi^2 x {r.reduced_chi2_with_dots / best.reduced_chi2_with_dots:.3f}, D_N "
            f"{r.size_nm:.2f} ± {r.size_std_nm:.2f} nm" for r in ties)
    best.nfev = sum(r.nfev for r in results.values())
    best.elapsed_s = time.perf_counter() - t0
    return best
