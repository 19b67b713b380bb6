"""Training of the metal-cluster network (issue 18): shape (family) and size of nanoclusters from SAXS + WAXS.

:func:`train_cluster_model` builds the per-cluster bases (:func:`~..physics.metal_basis.build_metal_basis`, disk
cached) on ``saxs_waxs_q(q_min, q_max, n_points)``, trains a :class:`~qdots_bluesky.models.cluster_network.ClusterNet`
on fresh populations of the training clusters every epoch (:class:`ClusterSource`: a share exactly monodisperse, the
rest log-normal with drawn dispersion or two-family mixtures, a share of blanks), then calibrates on held-out clusters
(``part="test"``, never trained; one seed for the calibration set, others for the evaluation sets):

- ``calibration.temperature_shape`` (1,): temperature of the family logits fitted to the structure groups
  (icosahedral / decahedral / fcc, the primary shape answer) on single-family rows (:func:`fit_group_temperature`);
- ``calibration.continuous_interval`` (2, K): the power law of :func:`~qdots_bluesky.models.continuous.
  fit_interval_calibration` for the continuous standard deviations;
- ``ood.feature_mean``, ``ood.feature_precision``, ``ood.threshold``: :func:`~qdots_bluesky.models.calibration.
  fit_feature_statistics` of the pooled features.

Loss per batch: soft cross-entropy of the family logits against ``family_probabilities`` + Gaussian negative
log-likelihoods of the standardized continuous targets (mean, log std) + binary cross-entropy of the presence logit;
blank rows (no clusters: the liquid's curve and a low-Q power law, augmented like every row) enter only the presence
term. AdamW, a short warm-up then a cosine learning rate over the epochs or ``max_minutes``, whichever ends first.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from tqdm.auto import tqdm

from ...models.architectures import T_DISPERSION_SLOPE
from ...models.bundle import jsonable
from ...models.calibration import TEMPERATURE_BOUNDS, fit_feature_statistics
from ...models.cluster_engine import LOG_SIGMA_BOUNDS, cluster_continuous_estimates
from ...models.cluster_network import ClusterNet
from ...models.continuous import calibrated_std, fit_covariate_slope, fit_interval_calibration
from ...models.network import count_parameters
from ..physics.metal_basis import MetalBasis, build_metal_basis, saxs_waxs_q
from ..physics.metal_clusters import FAMILIES
from .cluster_evaluation import EvaluationCondition, condition_metrics, draw_evaluation_set, structure_group_matrix
from .metal_augment import MASK_MODES, MetalAugmenter, MetalAugmentSettings
from .metal_sources import MetalPopulationRanges, MetalSource, population_bases, split_basis, split_dispersion_range
from .sources import BatchProducer, draw_set

#: Names of the calibration tensors a cluster bundle stores.
T_TEMPERATURE_SHAPE = "calibration.temperature_shape"
T_CONTINUOUS_INTERVAL = "calibration.continuous_interval"
#: Column of the dispersion among the continuous outputs.
DISPERSION_OUTPUT = 2
T_FEATURE_MEAN, T_FEATURE_PRECISION, T_OOD_THRESHOLD = "ood.feature_mean", "ood.feature_precision", "ood.threshold"
#: Number of continuous targets the head predicts (ln D_N, ln D_V, dispersion: the first columns of "continuous").
N_CONTINUOUS = 3


@dataclass
class ClusterTrainingSettings:
    """What :func:`train_cluster_model` trains on and how. Diameters in nm, Q in 1/A, times in minutes."""

    element: str = "Au"
    families: tuple[str, ...] = FAMILIES
    d_min_nm: float = 1.0
    d_max_nm: float = 10.0
    n_points: int = 1024
    q_min: float = 0.02
    q_max: float = 15.0
    saxs_q_max: float = 1.0  # the SAXS branch reads Q <= this
    waxs_q_min: float = 0.5  # the WAXS branch reads Q >= this
    populations_per_epoch: int = 8192
    batch_size: int = 256
    epochs: int = 400
    max_minutes: float = 45.0  # 22 min lost 1-2 points of size class; 40 min with a family weight of 0.7 lost the shape
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    seed: int = 0
    threads: int | None = 1  # torch threads; 1 leaves a core to the batch producer (2 cores: 9-13 s per epoch, 40-110 s with 2)
    network: dict[str, Any] = field(default_factory=dict)  # overrides of the network config
    augment: MetalAugmentSettings = field(default_factory=MetalAugmentSettings)
    ranges: MetalPopulationRanges = field(default_factory=lambda: MetalPopulationRanges(
        mixture_share=0.2, strain=(-0.01, 0.01)))
    monodisperse_share: float = 0.5  # rows drawn with dispersion exactly 0 (single clusters)
    blank_share: float = 0.05  # rows without clusters (presence target 0)
    # family, ln D_N, ln D_V, dispersion, presence (0.7 / 1.5 for family / ln D_N gained ~1.5 % of size class over 1 / 1;
    # over 45 min the family needs 1.2 to keep the shape from WAXS alone: 99.0 % against 96.9 % with 0.7 over 40 min)
    loss_weights: tuple[float, float, float, float, float] = (1.2, 1.5, 0.5, 0.3, 0.2)
    calibration_size: int = 4096
    evaluation_size: int = 1024
    evaluation_dispersions: tuple[float, ...] = (0.0, 0.2)
    test_every: int = 5

    def __post_init__(self):
        for name in ("monodisperse_share", "blank_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} {getattr(self, name)!r}; accepted: a share from 0 to below 1")
        for name in ("populations_per_epoch", "batch_size", "epochs", "calibration_size", "evaluation_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} {getattr(self, name)!r}; accepted: an integer >= 1")
        if not (self.max_minutes > 0 and self.lr > 0 and len(self.loss_weights) == 5):
            raise ValueError(f"max_minutes {self.max_minutes}, lr {self.lr}, loss_weights {self.loss_weights}; "
                             "accepted: max_minutes > 0, lr > 0, 5 loss weights")

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return jsonable(dataclasses.asdict(self))


@dataclass
class TrainedClusterModel:
    """A trained cluster network (eval mode), its calibration ``tensors`` (float32, bundle names), held-out
    ``metrics``, per-epoch ``history`` and ``info`` (settings, augmentation, basis provenance); all JSON-able but
    the model and the tensors."""

    model: ClusterNet
    tensors: dict[str, np.ndarray]
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    info: dict[str, Any]


def blank_patterns(q: np.ndarray, liquids: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` clean patterns without clusters (rows x Q): a liquid's curve (mean 1 over WAXS) plus a low-Q power law
    a (Q / Q_min)^-alpha times its value at Q_min, a log-uniform in 1e-3..30, alpha uniform in 1.5..4."""
    curve = liquids[rng.integers(0, len(liquids), n)]
    a = 10 ** rng.uniform(-3, np.log10(30.0), n)
    alpha = rng.uniform(1.5, 4.0, n)
    return curve + (a * curve[:, 0])[:, None] * (q[None, :] / q[0]) ** -alpha[:, None]


class ClusterSource:
    """Per epoch (the source protocol of :mod:`.sources`): ``size`` clean patterns of the ``part`` clusters, a share
    ``monodisperse_share`` with dispersion exactly 0 and the rest from ``ranges``, then a share ``blank_share``
    replaced by :func:`blank_patterns`; targets as :class:`~.metal_sources.MetalSource` plus ``presence`` (0 blank,
    1 clusters). The polydisperse rows of ``part="test"`` at least :data:`~.metal_sources.SERIES_DISPERSION` wide draw
    a sparse family from its whole series (:func:`~.metal_sources.population_bases`: clusters trained on), so the
    calibration sees populations, not histograms of 1-3 clusters."""

    def __init__(self, bases: list[MetalBasis], augmenter: MetalAugmenter, size: int, ranges: MetalPopulationRanges,
                 monodisperse_share: float = 0.3, blank_share: float = 0.05, part: str = "train", test_every: int = 5):
        n_mono = int(round(size * monodisperse_share))
        mono = dataclasses.replace(ranges, dispersion=(0.0, 0.0))
        pieces = [(mono, n_mono, False)] + [(dataclasses.replace(ranges, dispersion=d), n, series) for d, n, series
                                            in split_dispersion_range(*ranges.dispersion, size - n_mono)]
        self.sources = [MetalSource(population_bases(bases, part, test_every, polydisperse=series), augmenter, n, r,
                                    part="all", test_every=test_every)
                        for r, n, series in pieces if n > 0]
        self.augmenter, self.size, self.blank_share = augmenter, size, blank_share

    def __call__(self, rng: np.random.Generator):
        drawn = [s.populations(rng)[:2] for s in self.sources]
        patterns = np.concatenate([d[0] for d in drawn])
        targets = {k: np.concatenate([d[1][k] for d in drawn]) for k in drawn[0][1]}
        blank = rng.random(self.size) < self.blank_share
        patterns[blank] = blank_patterns(self.augmenter.q, self.augmenter.liquids, int(blank.sum()), rng)
        targets["presence"] = (~blank).astype(np.float32)
        return self.augmenter.with_patterns(patterns), np.arange(self.size), targets


def cluster_loss(out: dict[str, torch.Tensor], targets: dict[str, np.ndarray], config: dict[str, Any],
                 weights=(0.7, 1.5, 0.5, 0.3, 0.2)) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch (module docstring) and its parts (floats, per target)."""
    present = torch.from_numpy(np.asarray(targets["presence"], dtype=np.float32))
    n_valid = present.sum().clamp(min=1.0)
    logp = F.log_softmax(out["family_logits"], dim=1)
    ce = -(torch.from_numpy(targets["family_probabilities"]) * logp).sum(1)
    ce = (ce * present).sum() / n_valid
    offsets = torch.tensor(config["continuous_offsets"], dtype=torch.float32)
    scales = torch.tensor(config["continuous_scales"], dtype=torch.float32)
    y = (torch.from_numpy(targets["continuous"][:, :N_CONTINUOUS]) - offsets) / scales
    mu, log_s = out["continuous"][:, :N_CONTINUOUS], out["continuous"][:, N_CONTINUOUS:].clamp(*LOG_SIGMA_BOUNDS)
    nll = log_s + 0.5 * ((y - mu) * torch.exp(-log_s)) ** 2
    nll = (nll * present[:, None]).sum(0) / n_valid
    bce = F.binary_cross_entropy_with_logits(out["presence_logit"], present)
    parts = torch.cat([ce[None], nll, bce[None]])
    total = (parts * torch.tensor(weights, dtype=torch.float32)).sum()
    names = ("family", "log_dn", "log_dv", "dispersion", "presence")
    return total, dict(zip(names, parts.detach().tolist()))


@torch.no_grad()
def predict_outputs(model: ClusterNet, x: np.ndarray, batch: int = 512) -> dict[str, np.ndarray]:
    """The network's outputs (float32 NumPy) on inputs ``x`` (rows, 2, n_points), in eval mode, in batches."""
    was_training = model.training
    model.eval()
    outs = [model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))) for i in range(0, len(x), batch)]
    model.train(was_training)
    return {k: torch.cat([o[k] for o in outs]).numpy() for k in outs[0]}


def load_cluster_bases(settings: ClusterTrainingSettings, progress: bool = False) -> tuple[np.ndarray, list[MetalBasis]]:
    """The Q grid (1/A) and the per-cluster bases of the settings' families (disk cached)."""
    q = saxs_waxs_q(settings.q_min, settings.q_max, settings.n_points, "log")
    return q, [build_metal_basis(settings.element, f, q, settings.d_min_nm, settings.d_max_nm, progress=progress)
               for f in settings.families]


def network_config(settings: ClusterTrainingSettings, q: np.ndarray) -> dict[str, Any]:
    """The network config of the settings on the grid ``q``: the branches' edges from ``saxs_q_max`` and
    ``waxs_q_min``, then ``settings.network`` overrides."""
    cfg = {"n_points": int(q.size), "families": list(settings.families),
           "saxs_stop": int(np.searchsorted(q, settings.saxs_q_max, side="right")),
           "waxs_start": int(np.searchsorted(q, settings.waxs_q_min))}
    return ClusterNet(None, **(cfg | dict(settings.network))).config


def fit_group_temperature(logits: np.ndarray, group_labels: np.ndarray, groups: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of the structure groups ``group_labels`` under
    softmax(logits / T) summed per group (``groups``: families x groups, 0/1), within the bounds of
    :func:`~qdots_bluesky.models.calibration.fit_temperature`. Calibrates the groups (the primary shape answer);
    the fcc habits within a group are then as confident as the group (their own temperature would be higher)."""
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(group_labels)
    groups = np.asarray(groups, dtype=np.float64)
    if z.ndim != 2 or groups.shape[0] != z.shape[1] or labels.shape != (z.shape[0],) or z.shape[0] == 0:
        raise ValueError(f"logits {z.shape}, labels {labels.shape}, groups {groups.shape}; accepted: (n, families), "
                         "(n,), (families, groups)")
    member = groups[:, labels].T > 0  # (n, families): the families of each row's group

    def nll(log_t: float) -> float:
        a = z / np.exp(log_t)
        return float(np.mean(logsumexp(a, axis=1) - logsumexp(np.where(member, a, -np.inf), axis=1)))

    lo, hi = np.log(TEMPERATURE_BOUNDS)
    return float(np.exp(minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6}).x))


def calibrate(model: ClusterNet, data, config: dict[str, Any]) -> dict[str, np.ndarray]:
    """The calibration tensors (module docstring) from a held-out set ``data`` (a DrawnSet with ``presence``)."""
    out = predict_outputs(model, data.x)
    present = data.targets["presence"] > 0.5
    probs = data.targets["family_probabilities"]
    single = present & (probs.max(axis=1) > 0.999)
    groups = structure_group_matrix(config["families"])
    temperature = fit_group_temperature(out["family_logits"][single], (probs[single] @ groups).argmax(axis=1), groups)
    mean, std = cluster_continuous_estimates(out["continuous"][present], config)
    truth = data.targets["continuous"][present, :N_CONTINUOUS]
    interval = fit_interval_calibration(truth - mean, std)
    # one power law of the network's width leaves polydisperse populations under-covered and monodisperse ones
    # over-covered: widen by exp(slope x estimated dispersion), then rescale so that 68 % hold overall
    slope, factor = fit_covariate_slope(truth - mean, calibrated_std(std, interval), mean[:, DISPERSION_OUTPUT])
    interval[0] += np.log(factor)
    stats = fit_feature_statistics(out["features"][present])
    return {T_TEMPERATURE_SHAPE: np.array([temperature], dtype=np.float32),
            T_CONTINUOUS_INTERVAL: interval.astype(np.float32),
            T_DISPERSION_SLOPE: slope.astype(np.float32),
            T_FEATURE_MEAN: stats["feature_mean"], T_FEATURE_PRECISION: stats["feature_precision"],
            T_OOD_THRESHOLD: stats["threshold"]}


def evaluate_cluster_model(model: ClusterNet, bases: list[MetalBasis], tensors: dict[str, np.ndarray],
                           settings: ClusterTrainingSettings, conditions: list[EvaluationCondition] | None = None,
                           progress: bool = False) -> dict[str, Any]:
    """Metrics (:func:`~.cluster_evaluation.condition_metrics`, calibrated) per condition on held-out clusters; the
    default conditions: each mask mode at each of ``settings.evaluation_dispersions``. Seeds settings.seed + 2000 + i."""
    conditions = conditions or [EvaluationCondition(m, d) for d in settings.evaluation_dispersions for m in MASK_MODES]
    ranges = dataclasses.replace(settings.ranges)
    metrics = {}
    for i, cond in enumerate(tqdm(conditions, desc="evaluation", disable=not progress, leave=False)):
        data = draw_evaluation_set(bases, cond, settings.evaluation_size, settings.seed + 2000 + i, settings.augment,
                                   ranges, test_every=settings.test_every)
        out = predict_outputs(model, data.x)
        metrics[cond.name] = condition_metrics(out, data.targets, model.config,
                                               float(tensors[T_TEMPERATURE_SHAPE][0]), tensors[T_CONTINUOUS_INTERVAL],
                                               tensors.get(T_DISPERSION_SLOPE))
    return metrics


def _presence_metrics(model: ClusterNet, bases, augmenter, settings: ClusterTrainingSettings) -> dict[str, float]:
    src = ClusterSource(bases, augmenter, settings.evaluation_size, settings.ranges, settings.monodisperse_share, 0.5,
                        part="test", test_every=settings.test_every)
    data = draw_set(src, seed=settings.seed + 3000)
    logit = predict_outputs(model, data.x)["presence_logit"]
    blank = data.targets["presence"] < 0.5
    return {"blank_detected": float(np.mean(logit[blank] < 0)), "clusters_detected": float(np.mean(logit[~blank] > 0))}


def calibrate_and_evaluate(model: ClusterNet, bases: list[MetalBasis], settings: ClusterTrainingSettings,
                           progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The steps after training (the model left in eval mode): the calibration tensors from a set of held-out
    clusters (seed settings.seed + 1000; polydisperse rows of the sparse families from their whole series, see
    :class:`ClusterSource`) and the metrics (:func:`evaluate_cluster_model`, presence, temperature)."""
    s = settings
    model.eval()
    augmenter = MetalAugmenter(bases[0].q, settings=s.augment)
    calib_src = ClusterSource(bases, augmenter, s.calibration_size, s.ranges, s.monodisperse_share, s.blank_share,
                              part="test", test_every=s.test_every)
    tensors = calibrate(model, draw_set(calib_src, seed=s.seed + 1000), model.config)
    metrics = {"conditions": evaluate_cluster_model(model, bases, tensors, s, progress=progress),
               "presence": _presence_metrics(model, bases, augmenter, s),
               "temperature_shape": float(tensors[T_TEMPERATURE_SHAPE][0])}
    return tensors, metrics


def train_cluster_model(settings: ClusterTrainingSettings | None = None, progress: bool = True) -> TrainedClusterModel:
    """Train, calibrate and evaluate a cluster network (module docstring); returns the :class:`TrainedClusterModel`."""
    s = settings or ClusterTrainingSettings()
    if s.threads:
        torch.set_num_threads(int(s.threads))
    torch.manual_seed(s.seed)
    t_start = time.time()
    q, bases = load_cluster_bases(s, progress)
    model = ClusterNet(network_config(s, q))
    augmenter = MetalAugmenter(q, settings=s.augment)
    source = ClusterSource(bases, augmenter, s.populations_per_epoch, s.ranges, s.monodisperse_share, s.blank_share,
                           part="train", test_every=s.test_every)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    n_batches = max(1, s.populations_per_epoch // s.batch_size)
    history: list[dict[str, float]] = []
    t_train, step = time.time(), 0
    bar = tqdm(total=s.epochs, desc="cluster training", disable=not progress)
    model.train()
    for epoch in range(s.epochs):
        elapsed = time.time() - t_train
        if elapsed > 60.0 * s.max_minutes:
            break
        t0, sums = time.time(), {}
        producer = BatchProducer(source, s.batch_size, n_batches, seed=(s.seed, epoch))
        for targets, x, _ in producer:
            frac = max(epoch / s.epochs, (time.time() - t_train) / (60.0 * s.max_minutes))
            lr = s.lr * min(1.0, (step + 1) / s.warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
            for group in opt.param_groups:
                group["lr"] = lr
            loss, parts = cluster_loss(model(torch.from_numpy(x)), targets, model.config, s.loss_weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v / n_batches
        history.append({"epoch": epoch + 1, "lr": lr, "seconds": time.time() - t0} | sums)
        bar.update(1)
        bar.set_postfix(family=f"{sums['family']:.3f}", log_dn=f"{sums['log_dn']:.2f}")
    bar.close()
    train_seconds = time.time() - t_train
    tensors, metrics = calibrate_and_evaluate(model, bases, s, progress)
    metrics |= {"train_seconds": train_seconds, "epochs": len(history), "total_seconds": time.time() - t_start}
    info = {"settings": s.to_json(), "augmentation": jsonable(dataclasses.asdict(s.augment)),
            "parameters": count_parameters(model),
            "basis": {"element": s.element, "families": list(s.families), "wavelength_a": bases[0].wavelength_a,
                      "clusters": {b.family: len(b.params) for b in bases},
                      "train_clusters": {b.family: len(split_basis(b, "train", s.test_every).params) for b in bases},
                      "test_clusters": {b.family: len(split_basis(b, "test", s.test_every).params) for b in bases},
                      "q_grid": {"q_min": float(q[0]), "q_max": float(q[-1]), "n_points": int(q.size),
                                 "spacing": "log", "unit": "1/A"},
                      "diameter_range_nm": [s.d_min_nm, s.d_max_nm]}}
    return TrainedClusterModel(model, tensors, jsonable(metrics), history, info)
