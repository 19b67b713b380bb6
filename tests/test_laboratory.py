"""Tests of the laboratory measurement's helpers (sim/learning/laboratory.py); the measurement itself is tested through
the Augmenter in test_augment.py."""
from __future__ import annotations

import pytest

from qdots_bluesky.sim.learning.laboratory import direction_label, parse_direction


@pytest.mark.parametrize("text", ["111", "<111>", "[1 1 1]", "(1,1,1)", (1, 1, 1)])
def test_parse_direction_reads_indices_and_strings(text):
    assert parse_direction(text) == (1, 1, 1)


@pytest.mark.parametrize("bad", ["000", "11", (1, 2)])
def test_parse_direction_rejects_zero_and_wrong_length(bad):
    with pytest.raises(ValueError, match="accepted"):
        parse_direction(bad)


def test_direction_label():
    assert direction_label((1, 1, 0)) == "110"
    assert direction_label((1, 10, 0)) == "1 10 0"
    assert direction_label((-1, 1, 0)) == "-1 1 0"
