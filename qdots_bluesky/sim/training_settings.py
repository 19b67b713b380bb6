"""The settings of a training run (a module of its own, so that command-line help needs no heavy imports)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Accepted values of ``TrainingSettings.precision``.
PRECISIONS = ("auto", "bf16", "fp32")


def check_filters(filters) -> list[int]:
    """The filters of the five convolutions as a list of ints; ValueError saying what is accepted otherwise."""
    try:
        ok = len(filters) == 5 and all(int(f) == f and f >= 1 for f in filters)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"filters={filters!r}; accepted: five positive integers, one per convolution")
    return [int(f) for f in filters]


@dataclass
class TrainingSettings:
    """Everything that defines a training run; stored in the bundle."""

    seed: int = 0
    max_epochs: int = 170
    samples_per_epoch: int = 32_000
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 6
    early_stopping_from: float = 0.9  # fraction of max_epochs before early stopping may act (once the learning rate has annealed)
    validation_repeats: int = 8
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    regression_weight: float = 0.05
    dispersion_weight: float = 1.0
    focal_gamma: float = 1.0  # focal loss (1 - p_true)^gamma on the size and dispersion classes; 0 = cross-entropy
    presence_weight: float = 0.2  # weight of the nanocrystal-presence loss (needs augmentation blank_fraction > 0)
    ood_quantile: float = 0.995
    max_minutes: float = 19.5
    torch_threads: int = 1  # network on one core, augmentation on the other (0 = torch default)
    input_transform: str = "center"  # the network's input transform (models.network: center, sqrt, log, none)
    filters: list[int] = field(default_factory=lambda: [32, 64, 96, 128, 128])  # filters of the five convolutions (reference: 32 each)
    precision: str = "auto"  # "bf16": bfloat16 autocast of the matrix products (weights stay float32); "fp32"; "auto": bf16 where the CPU has native bf16

    def __post_init__(self) -> None:
        self.filters = check_filters(self.filters)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}; accepted: {', '.join(map(repr, PRECISIONS))}")

    def to_dict(self) -> dict:
        return asdict(self)
