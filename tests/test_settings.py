"""The training settings: defaults and the refusals of bad values."""
from __future__ import annotations

import pytest

from qdots_bluesky.sim.learning.settings import TrainingSettings


def test_training_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="precision"):
        TrainingSettings(precision="fp16")
    assert TrainingSettings().filters == [32, 64, 96, 128, 128]  # the shipped width; the reference has 32 in each layer
    for bad in ([32, 32], [32, 64, 64, 64, 0], [32, 64, 64, 64, 6.5], ["a"] * 5, 32):
        with pytest.raises(ValueError, match="filters"):
            TrainingSettings(filters=bad)
    assert TrainingSettings().kernels == [20, 5, 4, 3, 2]  # the shipped strides; the reference has 10, 5, 4, 3, 2
    for bad in ([20, 5], [20, 5, 4, 3, 0], [20, 5, 4, 3, 2.5], None):
        with pytest.raises(ValueError, match="kernels"):
            TrainingSettings(kernels=bad)
    for bad in (dict(coarse_epochs=-1), dict(coarse_min_q_step=0.0), dict(coarse_points=[201, 20]),
                dict(coarse_points=[]), dict(coarse_truncate_high_fraction=1.5)):
        with pytest.raises(ValueError, match="coarse_"):
            TrainingSettings(**bad)


@pytest.mark.parametrize("bad", [dict(max_epochs=0), dict(samples_per_epoch=-5), dict(batch_size=2.5),
                                 dict(learning_rate=0.0)])
def test_training_settings_refuse_an_empty_schedule(bad):
    """qdots train --epochs 0 used to end in the learning-rate scheduler's own message; now it says what is accepted."""
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"{name}=.*accepted"):
        TrainingSettings(**bad)
