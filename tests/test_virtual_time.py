"""Virtual time (sim/beamline/virtual_time.py): a RunEngine's sleep advances manual-clock reactors at once."""
from __future__ import annotations

import time

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine

from qdots_bluesky.sim.beamline import SynthesisReactor
from qdots_bluesky.sim.beamline.virtual_time import use_virtual_time


def test_sleep_advances_the_reactor_by_delay_times_time_scale_and_can_be_undone():
    reactor = SynthesisReactor(name="reactor", clock="manual", temperature=120.0, time_scale=60.0)
    reactor.inject()
    re = RunEngine({})
    restore = use_virtual_time(re, reactor)
    t0 = time.perf_counter()
    re(bps.sleep(30.0))
    assert time.perf_counter() - t0 < 5.0  # no real waiting
    assert reactor.simulated_time() == pytest.approx(30.0 * 60.0)
    expected = reactor.growth_law.observe(reactor.growth_law.evolve(reactor.growth_law.start(120.0, 30.0), 1800.0, 120.0))
    assert reactor.state().mean_nm == pytest.approx(expected.mean_nm)
    restore()
    re(bps.sleep(0.01))  # the normal sleep again: manual time stands still
    assert reactor.simulated_time() == pytest.approx(30.0 * 60.0)


def test_only_manual_clock_reactors_are_accepted():
    re = RunEngine({})
    with pytest.raises(ValueError, match="manual"):
        use_virtual_time(re, SynthesisReactor(name="r", clock="real"))
    with pytest.raises(ValueError, match="at least one"):
        use_virtual_time(re)
