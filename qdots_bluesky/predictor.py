"""Size quantum dots with a trained model bundle: device choice, batching, calibration, flags.

``Predictor.from_bundle(path=None, device=None)`` loads a bundle (default: the shipped model)
and sizes standardized patterns (``predict_standardized``), one pattern on any x axis
(``predict_pattern``) or many patterns sharing an x axis (``predict_batch``); each result is a
:class:`SizeEstimate`.

Devices: ``None``/"auto" -> "cuda" if PyTorch sees a GPU, else "cpu"; any torch device string; or "numpy": the
same network evaluated with NumPy (:class:`~qdots_bluesky.models.engine.NumpyQDotsNet`) without PyTorch, equal
to float32 rounding. The ``qdots`` commands' "auto" is :func:`default_device` (cuda, else numpy).

Estimates of bundles whose network has a continuous head (trained on continuous populations; the shipped
model): the head gives a Gaussian mean and standard deviation for ln D (number-weighted mean diameter),
ln D_V (volume-weighted mean diameter), the dispersion and the strain; each standard deviation goes through the
bundle's calibration (a power law fitted so that 68.3 % of held-out simulations fall within 1 sigma at every
level of uncertainty; :mod:`qdots_bluesky.models.continuous`), so it
holds both the noise of the pattern and what the pattern cannot resolve (e.g. mean against dispersion):

- ``size_nm`` +- ``size_std_nm``: exp of the ln D estimate (the log-normal's median) and its 1-sigma width;
  ``size_volume_nm`` +- ``size_volume_std_nm`` likewise for D_V;
- ``dispersion`` +- ``dispersion_std``, ``strain`` +- ``strain_std`` (fractional lattice change from bulk);
- ``probabilities``: the Gaussian's mass in each size class (edges halfway between classes, the end
  classes with the tails); ``size_class_nm``: the most probable class; ``confidence``: its probability;
- ``dispersion_probabilities``, ``dispersion_confidence``: the dispersion-class head, temperature-scaled;
- ``size_regression_nm``: the regression head's output.

Bundles without a continuous head (class-only, written before it) give (temperature-scaled, "calibrated",
probabilities p_c = softmax(logits / T)) ``size_nm`` = sum_c p_c D_c, ``size_std_nm`` =
sqrt(sum_c p_c (D_c - size_nm)^2 + ((size_nm - size_regression_nm) / 2)^2) (the second term left out when
``training.regression_head_trained`` is false), ``dispersion`` the most probable dispersion class, and None
for the volume-weighted size, the dispersion's uncertainty and the strain.

Both kinds: ``nanocrystal_probability``: sigmoid of the presence head, the probability that the pattern
holds nanocrystal scattering at all (None for bundles without that head).

Bundles with a coarse-sampling specialist (see :mod:`qdots_bluesky.models.bundle`) hold a second
network fine-tuned on patterns measured with Q steps about one peak width of the largest dots;
``predict_standardized`` (and everything built on it) sends the patterns whose standardization
report gives a source Q step of at least the bundle's ``coarse_min_q_step`` to it, with its own
calibration and out-of-distribution statistics; ``SizeEstimate.network`` says which network sized
a pattern ("main" or "coarse").

A known instrument resolution (``instrument_fwhm_q`` = (Gaussian, Lorentzian) FWHM in 1/A of a resolution of constant
width in Q, as a synchrotron powder beamline measures it on a standard; (0, 0) for ideal simulated patterns) is given to
networks trained with that input (``config["instrument_input"]``, ``qdots train --known-instrument-share``); without it
(the default) the network allows for any resolution within its training range, which is what a pattern of an
uncharacterised instrument needs and what makes it read ideal patterns a little large. A laboratory 2theta scan's
resolution is not of that kind: size laboratory scans without it.

Status (:data:`STATUSES`): ``"sized"``; ``"no_nanocrystals"`` (the presence head finds no nanocrystal scattering:
no size is given, ``size_nm`` and the size class are NaN, ``null`` in JSON); ``"above_range"`` / ``"below_range"``
(the estimate lies beyond the sizes the model was trained on, ``trained_range_nm``: no size is given, the summary
says ``> 11.0 nm`` or ``< 1.5 nm``). The class probabilities stay the network's reading in every case. Where a
pattern is flagged ``out_of_distribution``, ``size_at_range_edge`` or ``beyond_trained_q_range``, or has no size,
``confidence`` is NaN: a calibrated class probability only holds for patterns like the training data, inside the
trained range.

Flags (:data:`FLAGS`): ``no_nanocrystals``, ``out_of_distribution``, ``low_confidence``,
``truncated_q_range``, ``padded``, ``coarse_sampling``, ``size_at_range_edge``; ``flag_details``
says why in words.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .models.bundle import (
    T_CONTINUOUS_INTERVAL,
    T_DISPERSION_TEMPERATURE,
    T_FEATURE_MEAN,
    T_FEATURE_PRECISION,
    T_OOD_THRESHOLD,
    T_SOLVENT_PROBE,
    T_SIZE_TEMPERATURE,
    BundleContents,
    read_bundle,
)
from .compute_device import default_device, resolve_device  # noqa: F401  (re-exported: where they were)
from .models.architectures import QDOTS_CNN
from .models.calibration import mahalanobis_distance, softmax
from .models.continuous import calibrated_std, class_probabilities, trained_range_nm
from .models.solvent_probe import mixed_patterns, probe_shift, probe_widened_std
from .models.engine import check_instrument_fwhm, continuous_estimates, instrument_condition, receptive_fields
from .estimate import FLAGS, STATUSES, SizeEstimate  # noqa: F401  (re-exported: the predictor's answers)
from .standardize import QGrid, StandardizationReport, standardize_batch, standardize_pattern

#: Default threshold of the ``low_confidence`` flag (calibrated max probability).
LOW_CONFIDENCE = 0.5
#: Coverage of the grid below which ``truncated_q_range`` (rather than ``padded``) is raised.
TRUNCATION_COVERAGE = 0.95
#: Margin (1/A) beyond the trained Q starts and ends before ``beyond_trained_q_range`` is raised.
TRAINED_Q_TOLERANCE = 0.02
#: Ratio of the data's Q step to the grid step above which ``coarse_sampling`` is raised.
COARSE_FACTOR = 10.0


class _TorchEngine:
    """Runs a QDotsNet with PyTorch: one ``inference_mode`` forward call per batch."""

    def __init__(self, contents: BundleContents, device: str) -> None:
        import torch

        from .models.network import QDotsNet, fuse_batch_norm, load_weights

        self.torch = torch
        self.device = torch.device(device)
        model = load_weights(QDotsNet(contents.config), contents.weights).eval()
        self.model = fuse_batch_norm(model).to(self.device)  # BatchNorm folded into the convolutions

    def __call__(self, X: np.ndarray, instrument: np.ndarray | None = None) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            cond = None if instrument is None else torch.from_numpy(instrument).to(self.device)
            out = self.model(torch.from_numpy(X).to(self.device), cond)
            return {k: out[k].float().cpu().numpy() for k in ("size_logits", "dispersion_logits", "size_nm", "features",
                                                                "nanocrystal_logit", "continuous") if k in out}


class Predictor:
    """Size patterns with one model bundle; see the module docstring. Build with :meth:`from_bundle`."""

    def __init__(self, contents: BundleContents, device: Any = None, *, batch_size: int = 512,
                 low_confidence: float = LOW_CONFIDENCE, num_threads: int | None = None,
                 instrument_fwhm_q: Any = None) -> None:
        self.contents = contents
        # the instrument resolution, (Gaussian, Lorentzian) FWHM in 1/A, or None: unknown (checked against the network;
        # a network without the input refuses one)
        self._instrument_row = instrument_condition(instrument_fwhm_q, 1, contents.config)
        self.instrument_fwhm_q = (None if instrument_fwhm_q is None
                                  else check_instrument_fwhm(instrument_fwhm_q, contents.config))
        if self.instrument_fwhm_q is None:
            self._instrument_row = None  # unknown: the network as without the input (FiLM of zeros is the identity)
        self.device = resolve_device(device)
        if num_threads is not None:
            if int(num_threads) < 1:
                raise ValueError(f"num_threads={num_threads}; accepted: an integer >= 1 or None")
            if self.device != "numpy":
                import torch

                torch.set_num_threads(int(num_threads))
        if int(batch_size) < 1:
            raise ValueError(f"batch_size={batch_size}; accepted: an integer >= 1")
        self.batch_size = int(batch_size)
        self.low_confidence = float(low_confidence)
        self._numpy_engine = contents.numpy_model() if self.device == "numpy" else None
        self._engine = self._numpy_engine if self.device == "numpy" else _TorchEngine(contents, self.device)
        t = contents.tensors
        self.size_temperature = float(t[T_SIZE_TEMPERATURE].reshape(-1)[0])
        self.dispersion_temperature = float(t[T_DISPERSION_TEMPERATURE].reshape(-1)[0])
        self.feature_mean = np.asarray(t[T_FEATURE_MEAN], dtype=np.float64)
        self.feature_precision = np.asarray(t[T_FEATURE_PRECISION], dtype=np.float64)
        self.ood_threshold = float(t[T_OOD_THRESHOLD].reshape(-1)[0])
        self.continuous_calibration = (np.asarray(t[T_CONTINUOUS_INTERVAL], dtype=np.float64)
                                       if contents.config.get("continuous_head") else None)
        # the solvent probe's patterns (models.solvent_probe), where the bundle calibrated its intervals with them
        self.solvent_probe = (np.asarray(t[T_SOLVENT_PROBE], dtype=np.float32)
                              if self.continuous_calibration is not None and T_SOLVENT_PROBE in t else None)
        self.grid: QGrid = contents.grid
        # the latest Q start and the earliest Q end (1/A) the network was trained with (its synchrotron augmentation)
        aug = contents.metadata.get("augmentation") or {}
        self.trained_q_ends = ((float(aug["q_min_range"][1]), float(aug["q_max_range"][0]))
                               if "q_min_range" in aug and "q_max_range" in aug else None)
        self.task = contents.task  # what it answers: the quantum-dot size task (qdots_bluesky.models.task)
        cfg = contents.config
        self.size_classes_nm = np.asarray(cfg["size_classes_nm"], dtype=np.float64)
        self.dispersion_classes = np.asarray(cfg["dispersion_classes"], dtype=np.float64)
        # the convolutions drop the grid points that do not fill a last window: padding there changes nothing
        length, span = receptive_fields(cfg)[-1]
        self.n_points_seen = int(length * span)
        training = contents.metadata.get("training") or {}
        self.combine_regression = bool(training.get("regression_head_trained", True))
        self.trained_range_nm = trained_range_nm(training, self.size_classes_nm, self.continuous_calibration is not None)
        self.network = "main"
        # the bundle's coarse-sampling specialist sizes the patterns whose source Q step is at least coarse_min_q_step
        self.coarse_min_q_step = contents.coarse_min_q_step
        self.coarse: Predictor | None = None
        if contents.coarse is not None:
            self.coarse = Predictor(contents.coarse, self.device, batch_size=batch_size, low_confidence=low_confidence,
                                    instrument_fwhm_q=self.instrument_fwhm_q)
            self.coarse.network = "coarse"
            self.coarse.trained_range_nm = self.trained_range_nm
            self.coarse.trained_q_ends = self.trained_q_ends
        self._run_engine(np.ones((1, self.grid.n_points), dtype=np.float32))  # warm-up: allocations, kernels, CUDA context

    def _run_engine(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """The network's outputs for one batch, with this predictor's instrument condition where it was told one."""
        cond = self._instrument_rows(X.shape[0])
        return self._engine(X) if cond is None else self._engine(X, instrument=cond)

    def _instrument_rows(self, n: int) -> np.ndarray | None:
        """The instrument condition of ``n`` patterns (the one row computed at construction), None where unknown."""
        if self._instrument_row is None:
            return None
        return np.repeat(self._instrument_row, n, axis=0)  # a writable copy (torch refuses read-only views)

    @classmethod
    def from_bundle(cls, path: str | Path | None = None, device: Any = None, **options: Any) -> "Predictor":
        """Load a bundle (``path`` None: the shipped model) onto ``device`` (None: cuda if available, else cpu).

        ``options``: ``batch_size`` (patterns per forward call, default 512), ``low_confidence``
        (flag threshold, default 0.5), ``instrument_fwhm_q`` (the instrument's (Gaussian, Lorentzian) FWHM in 1/A
        where it is known, for networks trained with it; default None: unknown), ``num_threads`` (PyTorch intra-op
        CPU threads, set process-wide
        with torch.set_num_threads; default: leave as is. 1 is fastest on a loaded 2-core machine;
        the "numpy" device follows OPENBLAS_NUM_THREADS / OMP_NUM_THREADS instead).
        Bundles of another task than quantum-dot sizing (a ``ClusterNet``: shape and size of metal clusters) give a
        :class:`~qdots_bluesky.cluster_predictor.ClusterPredictor` with the same methods, whose answers are
        :class:`~qdots_bluesky.estimate.TaskEstimate` objects.
        Raises BundleError for a bad bundle, ValueError for a bad device.
        """
        return cls.from_contents(read_bundle(path), device, **options)

    @classmethod
    def from_contents(cls, contents: BundleContents, device: Any = None, **options: Any) -> "Predictor":
        """As :meth:`from_bundle`, for a bundle already read (:func:`~qdots_bluesky.models.bundle.read_bundle`)."""
        if contents.architecture != QDOTS_CNN:  # another task (e.g. metal-cluster shape): its own answers
            from .cluster_predictor import ClusterPredictor

            return ClusterPredictor(contents, device, **options)  # type: ignore[return-value]
        return cls(contents, device, **options)

    @property
    def metadata(self) -> dict[str, Any]:
        """The bundle metadata."""
        return self.contents.metadata

    @property
    def path(self) -> Path:
        """The bundle file."""
        return self.contents.path

    def __repr__(self) -> str:
        known = "" if self.instrument_fwhm_q is None else f", instrument_fwhm_q={self.instrument_fwhm_q}"
        return f"Predictor({str(self.path)!r}, device={self.device!r}, grid={self.grid.to_dict()}{known})"

    # ----------------------------------------------------------------------------------------
    def _check_standardized(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        n = self.grid.n_points
        if X.ndim != 2 or X.shape[1] != n:
            raise ValueError(f"standardized patterns have shape {X.shape}; accepted: (n, {n}) on the model's Q grid "
                             f"{self.grid.q_min}-{self.grid.q_max} 1/A (use predict_pattern for raw data)")
        if not np.isfinite(X).all():
            raise ValueError("standardized patterns contain NaN or infinite values; accepted: finite values")
        return np.ascontiguousarray(X)

    def raw_outputs(self, X: Any) -> dict[str, np.ndarray]:
        """Main-network outputs for standardized patterns (n, n_points), in batches of ``batch_size``."""
        X = self._check_standardized(X)
        parts = [self._run_engine(X[i:i + self.batch_size]) for i in range(0, X.shape[0], self.batch_size)]
        if not parts:
            empty = {"size_logits": np.zeros((0, self.size_classes_nm.size), np.float32),
                     "dispersion_logits": np.zeros((0, self.dispersion_classes.size), np.float32),
                     "size_nm": np.zeros(0, np.float32), "features": np.zeros((0, self.feature_mean.size), np.float32)}
            if self.contents.config.get("presence_head"):
                empty["nanocrystal_logit"] = np.zeros(0, np.float32)
            if self.continuous_calibration is not None:
                empty["continuous"] = np.zeros((0, 2 * self.continuous_calibration.shape[1]), np.float32)
            return empty
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _probe_shift(self, X: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """The solvent probe's shift of ln D and ln D_V per pattern (:mod:`~qdots_bluesky.models.solvent_probe`),
        the mixtures made one batch at a time (at most k x ``batch_size`` rows held)."""
        shifts = []
        for i in range(0, X.shape[0], self.batch_size):
            mixed = self.raw_outputs(mixed_patterns(X[i:i + self.batch_size], self.solvent_probe))["continuous"]
            shifts.append(probe_shift(mu[i:i + self.batch_size],
                                      continuous_estimates(mixed, self.contents.config)[0]))
        return np.concatenate(shifts) if shifts else np.zeros((0, 2))

    def _per_row(self, reports: Any, n: int) -> list[Any]:
        if reports is None or isinstance(reports, (StandardizationReport, Mapping)):
            reports = [reports] * n
        reports = list(reports)
        if len(reports) != n:
            raise ValueError(f"{len(reports)} reports for {n} patterns; accepted: None, one report, or one per pattern")
        return reports

    def coarse_rows(self, reports: Any, n: int) -> np.ndarray:
        """Which of ``n`` patterns the coarse-sampling specialist sizes: those whose report gives a source Q step of
        at least ``coarse_min_q_step`` (all False without a specialist or without reports)."""
        reports = self._per_row(reports, n)
        if self.coarse is None:
            return np.zeros(n, dtype=bool)
        steps = [getattr(r, "source_q_step", None) if isinstance(r, StandardizationReport)
                 else (r.get("source_q_step") if r else None) for r in reports]
        return np.array([s is not None and float(s) >= self.coarse_min_q_step for s in steps], dtype=bool)

    def _routed(self, reports: list[Any], work) -> list[Any]:
        """``work(predictor, rows)`` (row indices) for the main network's rows and for the specialist's; one result
        per row, in row order."""
        n = len(reports)
        coarse = self.coarse_rows(reports, n)
        results: list[Any] = [None] * n
        for predictor, rows in ((self, np.flatnonzero(~coarse)), (self.coarse, np.flatnonzero(coarse))):
            if rows.size:
                for i, r in zip(rows, work(predictor, rows)):
                    results[i] = r
        return results

    def predict_standardized(self, X: Any, reports: Any = None) -> list[SizeEstimate]:
        """Size standardized patterns ``X`` (n, n_points) on the model's grid; one estimate per row.

        ``reports``: None, one StandardizationReport (or its dict) for all rows, or one per row;
        they add the Q-range and sampling flags, and patterns measured with a source Q step of at least
        ``coarse_min_q_step`` go to the bundle's coarse-sampling specialist (``SizeEstimate.network``).
        """
        X = self._check_standardized(X)
        reports = self._per_row(reports, X.shape[0])
        return self._routed(reports, lambda p, rows: p._estimate(X[rows], [reports[i] for i in rows]))

    def _estimate(self, X: np.ndarray, reports: list[Any]) -> list[SizeEstimate]:
        """Estimates of this predictor's own network (no routing)."""
        out = self.raw_outputs(X)
        n = out["size_logits"].shape[0]

        pd = softmax(out["dispersion_logits"], self.dispersion_temperature)
        D = self.size_classes_nm
        reg = out["size_nm"].astype(np.float64)
        cont: dict[str, np.ndarray] = {}
        if self.continuous_calibration is None:
            p = softmax(out["size_logits"], self.size_temperature)
            mean = p @ D
            var = np.maximum(p @ (D**2) - mean**2, 0.0)
            if self.combine_regression:
                var = var + ((mean - reg) / 2.0) ** 2
            std = np.sqrt(var)
        else:
            # the continuous head: Gaussian estimates of ln D, ln D_V, dispersion and strain, calibrated widths
            mu, sd = continuous_estimates(out["continuous"], self.contents.config)
            if self.solvent_probe is not None:  # widened by how far the sizes move with more solvent
                sd = probe_widened_std(sd, self._probe_shift(X, mu))
            sd = calibrated_std(sd, self.continuous_calibration)
            mean, std = np.exp(mu[:, 0]), np.exp(mu[:, 0]) * sd[:, 0]  # log-normal median and its 1-sigma width
            cont = {"size_volume_nm": np.exp(mu[:, 1]), "size_volume_std_nm": np.exp(mu[:, 1]) * sd[:, 1],
                    "dispersion": mu[:, 2], "dispersion_std": sd[:, 2], "strain": mu[:, 3], "strain_std": sd[:, 3]}
            p = class_probabilities(mu[:, 0], sd[:, 0], D)
        k = p.argmax(axis=1)
        conf = p[np.arange(n), k]
        kd = pd.argmax(axis=1)
        dist = mahalanobis_distance(out["features"], self.feature_mean, self.feature_precision)
        p_nc = None
        if "nanocrystal_logit" in out:
            p_nc = 1.0 / (1.0 + np.exp(-np.clip(out["nanocrystal_logit"].astype(np.float64), -60.0, 60.0)))

        sizes, disps = D.tolist(), self.dispersion_classes.tolist()
        last = len(sizes) - 1
        estimates = []
        for i in range(n):
            flags: list[str] = []
            details: dict[str, str] = {}
            if p_nc is not None and p_nc[i] < 0.5:
                flags.append("no_nanocrystals")
                details["no_nanocrystals"] = (f"probability of nanocrystal scattering {p_nc[i]:.2f}: looks like pure "
                                              "solvent or background")
            if dist[i] > self.ood_threshold:
                flags.append("out_of_distribution")
                details["out_of_distribution"] = (f"feature distance {dist[i]:.1f} > threshold {self.ood_threshold:.1f}: "
                                                  "unlike the training patterns")
            if conf[i] < self.low_confidence:
                flags.append("low_confidence")
                details["low_confidence"] = f"confidence {conf[i]:.2f} < {self.low_confidence:.2f}"
            report = reports[i]
            rep = report.to_dict() if isinstance(report, StandardizationReport) else (dict(report) if report else None)
            if rep is not None:
                self._report_flags(rep, flags, details)
            lo, hi = self.trained_range_nm
            status = ("no_nanocrystals" if "no_nanocrystals" in flags else "above_range" if mean[i] > hi
                      else "below_range" if mean[i] < lo else "sized")
            edge = (mean[i] - 2 * std[i] < lo or mean[i] + 2 * std[i] > hi) if cont else k[i] in (0, last)
            if status == "sized" and edge:
                flags.append("size_at_range_edge")
                details["size_at_range_edge"] = (f"{mean[i]:.2f} +- 2 x {std[i]:.2f} nm reaches the edge of the trained "
                                                 f"range {lo:.1f}-{hi:.1f} nm; the true size may be outside")
            extra = {key: float(values[i]) for key, values in cont.items()}
            extra.setdefault("dispersion", disps[kd[i]])
            size, size_std, size_class, confidence = float(mean[i]), float(std[i]), sizes[k[i]], float(conf[i])
            if status != "sized":  # no size where there are no dots, nor beyond what the model knows
                if "low_confidence" in flags:  # a class confidence says nothing without a size
                    flags.remove("low_confidence")
                    details.pop("low_confidence")
                size = size_std = size_class = np.nan
                extra = {key: np.nan for key in extra}
            if status != "sized" or {"out_of_distribution", "size_at_range_edge", "beyond_trained_q_range"} & set(flags):
                confidence = np.nan  # a calibrated class probability holds only for patterns like the training data
            estimates.append(SizeEstimate(
                size_nm=size, size_std_nm=size_std, size_class_nm=size_class, status=status,
                trained_range_nm=self.trained_range_nm,
                size_regression_nm=float(reg[i]), confidence=confidence,
                probabilities=dict(zip(sizes, p[i].tolist())),
                dispersion_confidence=float(pd[i, kd[i]]), dispersion_probabilities=dict(zip(disps, pd[i].tolist())),
                ood_distance=float(dist[i]), nanocrystal_probability=None if p_nc is None else float(p_nc[i]),
                network=self.network, flags=flags, flag_details=details, standardization=rep,
                instrument_fwhm_q=self.instrument_fwhm_q, **extra))
        return estimates

    def _report_flags(self, rep: Mapping[str, Any], flags: list[str], details: dict[str, str]) -> None:
        g = self.grid
        n_pad = int(rep.get("n_pad_low", 0)) + int(rep.get("n_pad_high", 0))
        coverage = float(rep.get("coverage", 1.0))
        where = (f"data cover Q {rep.get('q_min_data', g.q_min):.2f}-{rep.get('q_max_data', g.q_max):.2f} of "
                 f"{g.q_min:g}-{g.q_max:g} 1/A, {1 - coverage:.1%} of the grid padded")
        if coverage < TRUNCATION_COVERAGE:
            flags.append("truncated_q_range")
            details["truncated_q_range"] = where
        elif int(rep.get("n_pad_low", 0)) > 0 or int(rep.get("n_pad_high", 0)) > g.n_points - self.n_points_seen:
            flags.append("padded")
            details["padded"] = f"{n_pad} grid points padded: {where}"
        q_lo, q_hi = float(rep.get("q_min_data", g.q_min)), float(rep.get("q_max_data", g.q_max))
        if self.trained_q_ends is not None:
            start_max, end_min = self.trained_q_ends
            if q_lo > start_max + TRAINED_Q_TOLERANCE or q_hi < end_min - TRAINED_Q_TOLERANCE:
                flags.append("beyond_trained_q_range")
                details["beyond_trained_q_range"] = (f"data cover Q {q_lo:.2f}-{q_hi:.2f} 1/A; trained with starts up "
                                                     f"to {start_max:g} and ends from {end_min:g} 1/A")
        step = float(rep.get("source_q_step", 0.0))
        if step > COARSE_FACTOR * g.step:
            flags.append("coarse_sampling")
            details["coarse_sampling"] = (f"data step {step:.4f} 1/A is {step / g.step:.1f} x the grid step "
                                          f"{g.step:.4f} 1/A" + ("; sized by the bundle's coarse-sampling network"
                                                                 if self.network == "coarse" else ""))

    def predict_pattern(self, x: Any, y: Any, *, x_unit: str = "tth", wavelength: float | None = None) -> SizeEstimate:
        """Standardize one pattern (x in 2theta degrees with ``wavelength`` in A, or Q in 1/A) and size it."""
        row, report = standardize_pattern(x, y, x_unit=x_unit, wavelength=wavelength, grid=self.grid)
        return self.predict_standardized(row[None, :], [report])[0]

    def prepare(self, x: Any, Y: Any, *, x_unit: str = "tth", wavelength: float | None = None
                ) -> tuple[np.ndarray, list[StandardizationReport]]:
        """The network's input rows (n, n_points) of patterns ``Y`` (n, len(x)) on one x axis and one report per row
        (what :meth:`predict_standardized` takes; a ClusterPredictor has the same method for its input)."""
        X, report = standardize_batch(x, np.atleast_2d(Y), x_unit=x_unit, wavelength=wavelength, grid=self.grid)
        return X, [report] * X.shape[0]

    def predict_batch(self, x: Any, Y: Any, *, x_unit: str = "tth", wavelength: float | None = None) -> list[SizeEstimate]:
        """Size many patterns ``Y`` (n, len(x)) sharing one x axis (one standardization product)."""
        X, report = standardize_batch(x, Y, x_unit=x_unit, wavelength=wavelength, grid=self.grid)
        return self.predict_standardized(X, report)

    def class_activation_map(self, X: Any, reports: Any = None, *, target: str = "size", class_index: Any = None,
                             layer: int = -1) -> np.ndarray:
        """Importance of each grid point for the predicted (or given) class: (n, n_points), each row max 1.

        Grad-CAM on conv ``layer`` (default the last, where it equals the classic CAM), upsampled to
        the grid by giving each point the value of the feature-map cell whose window holds it;
        points beyond the network's last full window get 0. ``target``: "size" or "dispersion".
        Computed with the NumPy engine whatever the device (exact same weights). ``reports`` route
        rows to the network that sizes them, as in :meth:`predict_standardized`.
        """
        X = self._check_standardized(X)
        reports = self._per_row(reports, X.shape[0])
        if class_index is not None and np.ndim(class_index) > 0:
            class_index = np.broadcast_to(np.asarray(class_index), (X.shape[0],))
        rows_cam = self._routed(reports, lambda p, rows: list(p._cam(
            X[rows], class_index if class_index is None or np.ndim(class_index) == 0 else class_index[rows], target, layer)))
        return np.stack(rows_cam) if rows_cam else np.zeros((0, self.grid.n_points), np.float32)

    def _cam(self, X: np.ndarray, class_index: Any, target: str, layer: int) -> np.ndarray:
        if self._numpy_engine is None:
            self._numpy_engine = self.contents.numpy_model()
        return self._numpy_engine.grad_cam(X, class_index, target=target, layer=layer,
                                           instrument=self._instrument_rows(X.shape[0]))


def plot_prediction(path: str | Path, q: np.ndarray, pattern: np.ndarray, cam: np.ndarray, estimate: SizeEstimate,
                    title: str = "") -> Path:
    """Save the Grad-CAM figure of one estimate (:func:`qdots_bluesky.plotting.plot_prediction`; needs matplotlib)."""
    from .plotting import plot_prediction as plot

    return plot(path, q, pattern, cam, estimate, title=title)
