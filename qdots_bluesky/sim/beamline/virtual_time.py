"""Virtual time for simulated synthesis runs: a RunEngine whose ``sleep`` advances manual-clock reactors at once.

With :func:`use_virtual_time` a plan with delays runs in milliseconds and is exactly reproducible.
"""
from __future__ import annotations

import asyncio

from .devices import SynthesisReactor

__all__ = ["use_virtual_time"]


def use_virtual_time(run_engine, *reactors: SynthesisReactor):
    """Make the RunEngine's ``sleep`` advance manual-clock reactors instead of waiting.

    A ``Msg('sleep', None, d)`` then moves each reactor forward by ``d * time_scale`` simulated
    seconds and returns at once, so a plan with delays runs in milliseconds and is exactly
    reproducible. Applies to every plan on that RunEngine; returns a function that restores
    the normal sleep.
    """
    if not reactors:
        raise ValueError("use_virtual_time needs at least one SynthesisReactor")
    for r in reactors:
        if not isinstance(r, SynthesisReactor) or r.clock != "manual":
            raise ValueError("use_virtual_time works with SynthesisReactor(clock='manual') only; "
                             f"got {getattr(r, 'name', r)!r} with clock={getattr(r, 'clock', None)!r}")
    previous = run_engine._command_registry.get("sleep")

    async def _virtual_sleep(msg):
        delay = float(msg.args[0]) if msg.args else 0.0
        for r in reactors:
            r.advance(max(delay, 0.0) * r._time_scale)
        await asyncio.sleep(0)

    run_engine.register_command("sleep", _virtual_sleep)

    def restore() -> None:
        if previous is not None:
            run_engine.register_command("sleep", previous)

    return restore
