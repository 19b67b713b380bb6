"""Fitting: the focal and training losses, the network outputs on a fixed set, the epoch loop."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from _learning_fakes import DISPERSION_CLASSES, SIZE_CLASSES, fake_source
from qdots_bluesky.models.network import QDotsNet
from qdots_bluesky.sim.learning.fitting import (
    TrainingLoss,
    classification_loss,
    fit,
    network_outputs,
    resolve_precision,
)
from qdots_bluesky.sim.learning.settings import TrainingSettings
from qdots_bluesky.sim.learning.sources import draw_set


def _tiny_net(seed: int = 0, **overrides) -> QDotsNet:
    torch.manual_seed(seed)
    config = dict(n_points=5004, size_classes_nm=SIZE_CLASSES.tolist(), dispersion_classes=DISPERSION_CLASSES.tolist(),
                  presence_head=True, continuous_head=True, filters=[4, 4, 4, 4, 4], kernels=[10, 5, 4, 3, 2])
    return QDotsNet(**{**config, **overrides})


def test_focal_loss():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 3.0]])
    target = torch.tensor([0, 0, 1])  # confident right, unsure, confident wrong
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert torch.allclose(classification_loss(logits, target, 0.0), ce.mean())
    p = torch.softmax(logits, 1)[torch.arange(3), target]
    assert torch.allclose(classification_loss(logits, target, 2.0), ((1 - p) ** 2 * ce).mean())
    # the confident right answer is weighted down far more than the wrong one
    w = (1 - p) ** 2
    assert w[0] < 0.002 and w[2] > 0.9


def test_resolve_precision():
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") in ("bf16", "fp32")


def test_network_outputs_by_heads_and_chunks():
    net = _tiny_net()
    x = draw_set(fake_source(), seed=0).x
    out = network_outputs(net, x, chunk=5)
    assert set(out) == {"size_logits", "dispersion_logits", "size_nm", "features", "nanocrystal_logit", "continuous"}
    assert out["size_logits"].shape == (12, 3) and net.training  # left in train mode
    whole = network_outputs(net, x)
    torch.testing.assert_close(out["size_logits"], whole["size_logits"])
    plain = network_outputs(_tiny_net(presence_head=False, continuous_head=False), x)
    assert set(plain) == {"size_logits", "dispersion_logits", "size_nm", "features"}


def test_training_loss_counts_blanks_only_for_presence():
    net = _tiny_net()
    x, t, has_nc = draw_set(fake_source(), seed=1)
    settings = TrainingSettings(presence_weight=0.5)
    out = network_outputs(net, x)
    loss = TrainingLoss(settings, net.config)
    blanks = ~has_nc
    only_blanks = loss({k: v[torch.as_tensor(blanks)] for k, v in out.items()}, {k: v[blanks] for k, v in t.items()},
                       has_nc[blanks])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out["nanocrystal_logit"][torch.as_tensor(blanks)],
                                                               torch.zeros(int(blanks.sum())))
    torch.testing.assert_close(only_blanks, 0.5 * bce)
    shifted = {**t, "continuous": t["continuous"] + 1.0}
    assert float(loss(out, shifted, has_nc)) > float(loss(out, t, has_nc))  # the continuous head's likelihood counts
    no_cont = TrainingLoss(settings, _tiny_net(continuous_head=False).config)
    assert float(no_cont(out, shifted, has_nc)) == pytest.approx(float(no_cont(out, t, has_nc)))


def test_fit_keeps_the_best_epoch_and_is_reproducible():
    settings = TrainingSettings(samples_per_epoch=32, batch_size=16, max_minutes=60.0)
    validation = draw_set(fake_source(), seed=2)
    runs = []
    for _ in range(2):
        net = _tiny_net(seed=3)
        outcome = fit(net, TrainingLoss(settings, net.config), fake_source(), validation, settings, epochs=3,
                      learning_rate=1e-2, batch_seed=lambda epoch: [7, epoch], t_start=time.perf_counter(), progress=False)
        runs.append((net, outcome))
    (net, outcome), (net2, outcome2) = runs
    assert [r["epoch"] for r in outcome.history] == [1, 2, 3] and outcome.stopped_by == "max_epochs"
    losses = [r["validation_loss"] for r in outcome.history]
    assert outcome.best_epoch == int(np.argmin(losses)) + 1 and not net.training
    assert [r["validation_loss"] for r in outcome2.history] == losses
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
