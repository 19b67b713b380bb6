"""Tests of the augmentation settings (sim/learning/augment_settings.py): JSON round trip and validation."""
from __future__ import annotations

import json

import pytest

from qdots_bluesky.sim.learning.augment_settings import AugmentationSettings


def test_settings_json_round_trip():
    s = AugmentationSettings(solvent_blanks=[("blank.xye", "tth", 0.564162)], q_max_step=0.5)
    d = json.loads(json.dumps(s.to_dict()))
    assert AugmentationSettings.from_dict(d) == s
    with pytest.raises(ValueError, match="accepted"):
        AugmentationSettings(snr_range=(0.0, 10.0))
    with pytest.raises(ValueError, match="unknown"):
        AugmentationSettings.from_dict({"bogus": 1})
