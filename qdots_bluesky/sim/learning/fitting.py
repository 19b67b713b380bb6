"""Fitting the network: the training loss, the network's outputs on a fixed set, and the epoch loop.

:func:`fit` trains with AdamW and a one-cycle learning rate on batches augmented while the network works
(:func:`~.batch_stream.epoch_stream`: in a worker process, or a :class:`~.sources.BatchProducer` thread), keeps the
weights of the epoch with the least validation loss, stops early only once the rate has annealed
(``early_stopping_from``) and at ``max_minutes``. Matrix products run in bfloat16 where the CPU has it natively
(:func:`resolve_precision`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
from tqdm.auto import tqdm

from ...models.engine import LOG_SIGMA_BOUNDS
from .settings import TrainingSettings
from .sources import DrawnSet, Source

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ...models.network import QDotsNet

#: Seconds kept free for calibration and the held-out tests when the main network's training leaves time for the
#: coarse specialist within ``max_minutes``.
RESERVE_OVERHEAD_S = 45.0


def resolve_precision(precision: str) -> str:
    """"bf16" or "fp32": "auto" is bf16 where the CPU computes bfloat16 natively (AVX512-BF16 / AMX), else fp32."""
    if precision != "auto":
        return precision
    import torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bf16" if native else "fp32"


def classification_loss(logits, target, gamma: float = 0.0):
    """Mean cross-entropy, or with gamma > 0 the focal loss mean((1 - p_true)^gamma * CE) (Lin et al. 2017),
    which weights the patterns the network still gets wrong (dilute, noisy, coarse) over the easy ones."""
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target, reduction="none")
    if gamma == 0.0:
        return ce.mean()
    p_true = (-ce).exp()
    return ((1.0 - p_true) ** gamma * ce).mean()


class TrainingLoss:
    """The loss of a batch: size and dispersion classes (focal), size regression (smooth L1, nm) and the continuous
    head's Gaussian negative log-likelihood on the patterns with nanocrystals; the presence head on all rows.
    Weights from ``settings``; which heads from the network ``config``."""

    def __init__(self, settings: TrainingSettings, config: dict):
        import torch

        self.settings = settings
        self.presence = bool(config["presence_head"])
        self.continuous = bool(config["continuous_head"])
        self.offsets = torch.tensor(config["continuous_offsets"])
        self.scales = torch.tensor(config["continuous_scales"])

    def __call__(self, out: dict[str, "torch.Tensor"], t: dict[str, np.ndarray], has_nc: np.ndarray) -> "torch.Tensor":
        import torch
        import torch.nn.functional as F

        s = self.settings
        nc = torch.as_tensor(has_nc)
        total = torch.zeros(())
        if bool(nc.any()):
            l_size = classification_loss(out["size_logits"][nc].float(), torch.as_tensor(t["size_class"][has_nc]),
                                         s.focal_gamma)
            l_disp = classification_loss(out["dispersion_logits"][nc].float(),
                                         torch.as_tensor(t["dispersion_class"][has_nc]), s.focal_gamma)
            l_reg = F.smooth_l1_loss(out["size_nm"][nc].float(), torch.as_tensor(t["diameter_nm"][has_nc]))
            total = l_size + s.dispersion_weight * l_disp + s.regression_weight * l_reg
            if self.continuous:
                n_cont = self.offsets.numel()
                raw = out["continuous"][nc].float()
                y = (torch.as_tensor(t["continuous"][has_nc]) - self.offsets) / self.scales
                log_sigma = raw[:, n_cont:].clamp(*LOG_SIGMA_BOUNDS)
                nll = log_sigma + 0.5 * ((y - raw[:, :n_cont]) * torch.exp(-log_sigma)) ** 2  # Gaussian NLL
                total = total + s.continuous_weight * nll.mean()
        if self.presence:
            total = total + s.presence_weight * F.binary_cross_entropy_with_logits(
                out["nanocrystal_logit"].float(), nc.float())
        return total


def network_outputs(net: "QDotsNet", x: np.ndarray, instrument: np.ndarray | None = None,
                    chunk: int = 1024) -> dict[str, "torch.Tensor"]:
    """The network's outputs on patterns ``x`` (n, n_points) in eval mode, ``chunk`` rows at a time: size and
    dispersion logits, size_nm, features, and nanocrystal_logit / continuous where the network has those heads.
    ``instrument``: the instrument condition per row (n, 3) for a network with that input (None: unknown).
    Leaves the network in train mode."""
    import torch

    keys = (("size_logits", "dispersion_logits", "size_nm", "features")
            + (("nanocrystal_logit",) if net.config["presence_head"] else ())
            + (("continuous",) if net.config["continuous_head"] else ()))
    net.eval()
    outs = []
    with torch.inference_mode():
        for s in range(0, len(x), chunk):
            cond = None if instrument is None else torch.as_tensor(instrument[s:s + chunk])
            outs.append(net(torch.as_tensor(x[s:s + chunk]), cond))
    net.train()
    return {k: torch.cat([o[k] for o in outs]) for k in keys}


@dataclass
class FitOutcome:
    """What :func:`fit` did: one record per epoch, the epoch whose weights were kept, and why it stopped
    ("max_epochs", "early_stopping" or "time_limit")."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    stopped_by: str = "max_epochs"


def fit(net: "QDotsNet", loss: TrainingLoss, source: Source, validation: DrawnSet, settings: TrainingSettings, *,
        epochs: int, learning_rate: float, batch_seed: Callable[[int], object], t_start: float,
        autocast_dtype: "torch.dtype | None" = None, desc: str = "training", progress: bool = True,
        reserve_epochs: int = 0) -> FitOutcome:
    """Train ``net`` with a one-cycle rate on fresh batches of ``source`` (epoch e seeded ``batch_seed(e)``); keep
    the weights of the epoch with the least loss on ``validation``; return the net in eval mode.

    Stops at ``settings.max_minutes`` since ``t_start`` (a ``time.perf_counter`` reading, s), or earlier by the
    time ``reserve_epochs`` more epochs of this speed would take (what a later fit, the coarse specialist's, needs
    within the cap)."""
    import torch

    from .batch_stream import epoch_stream

    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=settings.weight_decay)
    n_batches = max(1, settings.samples_per_epoch // settings.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=epochs * n_batches,
                                                    pct_start=0.15)
    x_val, val_t, val_nc = validation
    val_nc_t = torch.as_tensor(val_nc)
    val_size_t = torch.as_tensor(val_t["size_class"][val_nc])
    presence = bool(net.config["presence_head"])

    def forward(x, instrument):
        instrument = None if instrument is None else torch.as_tensor(instrument)
        if autocast_dtype is None:
            return net(x, instrument)
        with torch.autocast("cpu", dtype=autocast_dtype):
            return net(x, instrument)

    outcome = FitOutcome()
    best_loss, best_state = np.inf, None
    bar = tqdm(total=epochs, desc=desc, disable=not progress)
    t_fit = time.perf_counter()
    stream = epoch_stream(source, settings.batch_size, n_batches, [batch_seed(e) for e in range(epochs)],
                          settings.batch_worker)
    try:
        for epoch in range(epochs):
            net.train()
            total, count = 0.0, 0
            for t, x, has_nc in next(stream):
                value = loss(forward(torch.as_tensor(x), t.get("instrument")), t, has_nc)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                scheduler.step()
                total += float(value.detach()) * len(x)
                count += len(x)
            val_out = network_outputs(net, x_val, val_t.get("instrument"))
            val_loss = float(loss(val_out, val_t, val_nc))
            val_acc = float((val_out["size_logits"][val_nc_t].argmax(1) == val_size_t).float().mean())
            record = {"epoch": epoch + 1, "train_loss": total / max(count, 1), "validation_loss": val_loss,
                      "validation_size_accuracy": val_acc, "seconds": time.perf_counter() - t_start}
            if presence:
                record["validation_presence_accuracy"] = float(((val_out["nanocrystal_logit"] > 0).numpy() == val_nc).mean())
            outcome.history.append(record)
            bar.update(1)
            bar.set_postfix(train=f"{total / max(count, 1):.3f}", val=f"{val_loss:.3f}", acc=f"{val_acc:.3f}")
            if val_loss < best_loss:
                best_loss, best_state = val_loss, {k: v.detach().clone() for k, v in net.state_dict().items()}
                outcome.best_epoch = epoch + 1
            elif epoch + 1 - max(outcome.best_epoch, int(settings.early_stopping_from * epochs)) >= settings.patience:
                # patience counts only epochs after early_stopping_from (the annealed learning rate)
                outcome.stopped_by = "early_stopping"
                break
            now = time.perf_counter()
            reserve = reserve_epochs * (now - t_fit) / (epoch + 1) + (RESERVE_OVERHEAD_S if reserve_epochs else 0.0)
            if (now - t_start + reserve) / 60 > settings.max_minutes:
                outcome.stopped_by = "time_limit"
                break
    finally:
        stream.close()  # stops the worker (early stopping, the time limit, an error)
    bar.close()
    net.load_state_dict(best_state)
    net.eval()
    return outcome
