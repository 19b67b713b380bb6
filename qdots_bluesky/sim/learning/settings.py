"""The settings of a training run (a module of its own, so that command-line help needs no heavy imports)."""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field

#: Default of ``AugmentationSettings.strain_jitter`` (here, where the command-line help can read it without the
#: augmentation's imports): the largest fractional lattice change drawn for a training pattern each epoch.
DEFAULT_STRAIN_JITTER = 0.01
#: The largest ``strain_jitter`` accepted (the settings' validation and ``qdots train --strain-jitter``).
MAX_STRAIN_JITTER = 0.02

#: Accepted values of ``TrainingSettings.precision``.
PRECISIONS = ("auto", "bf16", "fp32")
#: Where the training batches are augmented (``TrainingSettings.batch_worker``).
BATCH_WORKERS = ("process", "thread")


def check_per_convolution(name: str, values) -> list[int]:
    """``values`` (filters or kernels) as five positive ints, one per convolution; ValueError naming ``name`` otherwise."""
    try:
        ok = len(values) == 5 and all(int(v) == v and v >= 1 for v in values)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name}={values!r}; accepted: five positive integers, one per convolution")
    return [int(v) for v in values]


@dataclass
class TrainingSettings:
    """Everything that defines a training run; stored in the bundle."""

    seed: int = 0
    max_epochs: int = 110
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
    # a safety net, not the schedule: the default epochs end (early stopping or max_epochs) in ~16 min on an idle
    # 2-core CPU; where this cap stops them instead, where it stops depends on the machine's speed
    max_minutes: float = 30.0
    torch_threads: int = 1  # network on one core, augmentation on the other (0 = torch default)
    # where the batches are augmented while the network trains: "process", one worker process per fit (no interpreter
    # lock shared with the training loop: epochs of 7.9 s against 10.4 s on 2 cores, bench_training_speed; a thread
    # where sim.learning.batch_stream.can_fork says no), or "thread"; the same batches either way
    batch_worker: str = "process"
    input_transform: str = "center"  # the network's input transform (models.network: center, sqrt, log, none)
    filters: list[int] = field(default_factory=lambda: [32, 64, 96, 128, 128])  # filters of the five convolutions (reference: 32 each)
    # kernel = stride of the five convolutions (reference: 10, 5, 4, 3, 2). A first window of 20 points (0.056 1/A,
    # about the peak width of the largest dots) halves every later layer's positions, and so the time of an epoch
    kernels: list[int] = field(default_factory=lambda: [20, 5, 4, 3, 2])
    precision: str = "auto"  # "bf16": bfloat16 autocast of the matrix products (weights stay float32); "fp32"; "auto": bf16 where the CPU has native bf16
    # the coarse-sampling specialist: a copy of the trained network fine-tuned on synchrotron patterns resampled to
    # coarse_points points over their measured range (Q steps about one peak width of the largest dots), which sizes
    # the patterns whose source Q step is at least coarse_min_q_step (1/A); coarse_epochs = 0: no specialist
    coarse_epochs: int = 30
    coarse_learning_rate: float = 3e-3
    coarse_points: list[int] = field(default_factory=lambda: [201, 226, 251, 276, 301, 351])
    coarse_truncate_high_fraction: float = 0.2
    coarse_min_q_step: float = 0.037
    # continuous populations: every epoch populations_per_epoch populations with mean diameter, dispersion and
    # lattice strain drawn uniformly within population_ranges (sim.cluster_basis.PopulationRanges) are made from the
    # per-cluster DSE patterns, and the network learns a mean and an uncertainty of each (the continuous head,
    # weight continuous_weight) besides the classes; False: train on the library's grid populations only
    continuous: bool = True
    populations_per_epoch: int = 2048
    population_ranges: dict = field(default_factory=lambda: {
        "mean_diameter_nm": [1.5, 11.0], "dispersion": [0.03, 0.30], "strain": [-0.01, 0.01], "microstrain": [0.0, 0.01],
        "microstrain_share": 0.0, "instrument_gauss_fwhm_q": [0.0, 0.005], "instrument_lorentz_fwhm_q": [0.0, 0.005],
        "instrument_share": 0.7})
    continuous_weight: float = 1.0
    # faceted dots (sim.physics.habits): a share faceted_share of the continuous populations is made of the clusters
    # of one of faceted_habits (drawn uniformly; same equal-volume diameters) instead of the near-spherical series;
    # 0: spheres only, as the reference work. PbS dots below ~10 nm are {111}-{100} polyhedra or {110} rhombic
    # dodecahedra (cubes come at larger sizes), hence the default list
    faceted_share: float = 0.0
    faceted_habits: list[str] = field(default_factory=lambda: [
        "octahedron", "truncated-octahedron", "cuboctahedron", "rhombic-dodecahedron"])
    # a known instrument resolution: in a share known_instrument_share of the continuous populations the network is
    # told the synchrotron instrument profile they carry (its Gaussian and Lorentzian FWHM in Q, zero where none:
    # models.engine.instrument_condition), in the rest (and in every laboratory sample) that it is unknown; 0: no
    # instrument input, the network always assumes an unknown resolution. Only continuous populations carry an
    # instrument profile: a model trained on the library's populations (continuous=False) has no instrument input
    known_instrument_share: float = 0.5
    # the solvent probe (models.solvent_probe): the continuous size's standard deviations widened by how far the size
    # moves when 30 % of a built-in solvent model is mixed in, calibrated with it; the probes go into the bundle. Off
    # in the shipped recipe: it widens laboratory films' uncertainties beyond their errors (README, *Measured patterns*)
    solvent_probe: bool = False

    def __post_init__(self) -> None:
        self.filters = check_per_convolution("filters", self.filters)
        self.kernels = check_per_convolution("kernels", self.kernels)
        for name in ("max_epochs", "samples_per_epoch", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name}={value!r}; accepted: an integer >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r}; accepted: a number > 0")
        if not (isinstance(self.coarse_epochs, int) and self.coarse_epochs >= 0):
            raise ValueError(f"coarse_epochs={self.coarse_epochs!r}; accepted: an integer >= 0 (0: no coarse specialist)")
        if not (self.coarse_min_q_step > 0 and self.coarse_learning_rate > 0):
            raise ValueError(f"coarse_min_q_step={self.coarse_min_q_step!r}, coarse_learning_rate="
                             f"{self.coarse_learning_rate!r}; accepted: both > 0")
        if not self.coarse_points or any(int(n) != n or n < 50 for n in self.coarse_points):
            raise ValueError(f"coarse_points={self.coarse_points!r}; accepted: a non-empty list of integers >= 50")
        if not 0.0 <= self.coarse_truncate_high_fraction <= 1.0:
            raise ValueError(f"coarse_truncate_high_fraction={self.coarse_truncate_high_fraction!r}; accepted: 0..1")
        if int(self.populations_per_epoch) != self.populations_per_epoch or self.populations_per_epoch < 1:
            raise ValueError(f"populations_per_epoch={self.populations_per_epoch!r}; accepted: an integer >= 1")
        if not self.continuous_weight >= 0:
            raise ValueError(f"continuous_weight={self.continuous_weight!r}; accepted: a number >= 0")
        if not 0.0 <= self.faceted_share <= 1.0:
            raise ValueError(f"faceted_share={self.faceted_share!r}; accepted: a share in [0, 1]")
        if not 0.0 <= self.known_instrument_share <= 1.0:
            raise ValueError(f"known_instrument_share={self.known_instrument_share!r}; accepted: a share in [0, 1]")
        widest = max(float(self.population_ranges.get(k, [0.0, 0.0])[1])
                     for k in ("instrument_gauss_fwhm_q", "instrument_lorentz_fwhm_q"))
        if self.known_instrument_share > 0 and self.continuous and not widest > 0:
            raise ValueError(f"known_instrument_share={self.known_instrument_share!r} with instrument widths of 0 only "
                             "(population_ranges): nothing to tell; accepted: widths up to > 0, or a share of 0")

        if self.faceted_share > 0 and not self.continuous:
            raise ValueError(f"faceted_share={self.faceted_share!r} needs continuous populations (faceted dots are drawn "
                             "from the per-cluster bases); accepted: continuous=True, or faceted_share=0")
        if self.faceted_share > 0:  # (the habits module imports ASE: only where faceted dots are drawn)
            from ..physics.habits import FACETED_HABITS, check_habit

            self.faceted_habits = [check_habit(h) for h in self.faceted_habits]
            if not self.faceted_habits or "sphere" in self.faceted_habits:
                raise ValueError(f"faceted_habits={self.faceted_habits!r}; accepted: one or more of "
                                 f"{', '.join(FACETED_HABITS)}")
        if self.batch_worker not in BATCH_WORKERS:
            raise ValueError(f"batch_worker={self.batch_worker!r}; accepted: {', '.join(map(repr, BATCH_WORKERS))}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}; accepted: {', '.join(map(repr, PRECISIONS))}")

    def to_dict(self) -> dict:
        return asdict(self)
