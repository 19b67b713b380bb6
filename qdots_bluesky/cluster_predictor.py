"""Answer a SAXS + WAXS model's task for measured patterns: shape probabilities and sizes with uncertainties.

:meth:`qdots_bluesky.predictor.Predictor.from_bundle` returns a :class:`ClusterPredictor` for bundles whose network
is a ``ClusterNet`` (:mod:`qdots_bluesky.models.architectures`), so every caller (``qdots predict``, ``LiveSizer``,
``qdots replay``) loads any bundle the same way and publishes what its task declares (:class:`TaskEstimate`).

Per pattern: resampled onto the task's log-spaced Q grid with the mask of measured points and turned into the two
network channels (:mod:`qdots_bluesky.saxs_waxs_input`); the network gives family logits (temperature-scaled:
calibrated probabilities, summed into the task's structure groups), Gaussian means and log standard deviations of
ln D (number-weighted mean equal-volume diameter), ln D_V (volume-weighted) and the dispersion (each standard
deviation through the bundle's interval calibration, fitted on held-out simulations so that 68 % of them fall
within 1 sigma), the presence logit (no particles: no answer) and pooled features (the Mahalanobis distance to the
training features flags patterns unlike the training data). Statuses and flags as for the quantum-dot sizer
(:data:`qdots_bluesky.estimate.FLAGS`), plus ``no_waxs``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .compute_device import resolve_device
from .estimate import TaskEstimate
from .models.architectures import T_DISPERSION_SLOPE, T_SHAPE_TEMPERATURE, VALUE_OUTPUTS, numpy_network, torch_network
from .models.bundle import T_CONTINUOUS_INTERVAL, T_FEATURE_MEAN, T_FEATURE_PRECISION, T_OOD_THRESHOLD, BundleContents
from .models.calibration import mahalanobis_distance, softmax
from .models.cluster_engine import cluster_continuous_estimates
from .models.continuous import calibrated_std, class_probabilities, trained_range_nm, widened_std
from .saxs_waxs_input import SAXS_WAXS_SPLIT_Q, log_q_grid, network_input, resample_saxs_waxs

LOW_CONFIDENCE = 0.5


class _TorchClusterEngine:
    """The network with PyTorch, one ``inference_mode`` forward call per batch."""

    def __init__(self, contents: BundleContents, device: str) -> None:
        import torch

        from .models.network import load_weights

        self.torch, self.device = torch, torch.device(device)
        self.model = load_weights(torch_network(contents.config), contents.weights).eval().to(self.device)

    def __call__(self, X: np.ndarray) -> dict[str, np.ndarray]:
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(X).to(self.device))
            return {k: v.float().cpu().numpy() for k, v in out.items()}


class ClusterPredictor:
    """A SAXS + WAXS model's answers (see the module docstring); build with ``Predictor.from_bundle``."""

    def __init__(self, contents: BundleContents, device: Any = None, *, batch_size: int = 512,
                 low_confidence: float = LOW_CONFIDENCE, num_threads: int | None = None,
                 instrument_fwhm_q: Any = None) -> None:
        if instrument_fwhm_q is not None:
            raise ValueError(f"this model ({contents.task.name}) has no instrument input; accepted: no instrument FWHM "
                             "(a known resolution is told to quantum-dot models trained with known_instrument_share > 0)")
        self.instrument_fwhm_q = None  # what the network was told: nothing (no such input)
        self.contents = contents
        self.task = contents.task
        self.device = resolve_device(device)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size={batch_size}; accepted: an integer >= 1")
        if num_threads is not None and self.device != "numpy":
            import torch

            torch.set_num_threads(int(num_threads))
        self.batch_size, self.low_confidence = int(batch_size), float(low_confidence)
        cfg = contents.config
        self._engine = (numpy_network(cfg, contents.weights) if self.device == "numpy"
                        else _TorchClusterEngine(contents, self.device))
        t = contents.tensors
        self.shape_temperature = float(t[T_SHAPE_TEMPERATURE].reshape(-1)[0])
        self.interval = np.asarray(t[T_CONTINUOUS_INTERVAL], dtype=np.float64)
        self.dispersion_slope = (np.asarray(t[T_DISPERSION_SLOPE], dtype=np.float64) if T_DISPERSION_SLOPE in t
                                 else np.zeros(self.interval.shape[1]))
        self.feature_mean = np.asarray(t[T_FEATURE_MEAN], dtype=np.float64)
        self.feature_precision = np.asarray(t[T_FEATURE_PRECISION], dtype=np.float64)
        self.ood_threshold = float(t[T_OOD_THRESHOLD].reshape(-1)[0])
        spec = self.task.input  # read_bundle checked that the network answers the task (architectures.task_mismatch)
        self.grid = spec  # q_min, q_max, n_points: what LiveSizer and the reports show
        self.q = log_q_grid(spec.q_min, spec.q_max, spec.n_points)
        self.size_classes_nm = np.asarray(self.task.size_classes_nm, dtype=np.float64)
        self.dispersion_classes = np.zeros(0)
        outputs = list(cfg["continuous_targets"])
        self._dispersion_index = outputs.index("dispersion") if "dispersion" in outputs else None
        self._values = []
        for target in self.task.values:
            source, log = VALUE_OUTPUTS.get(target.name, (target.name, False))
            self._values.append((target, outputs.index(source), log))
        self._classes = self.task.classes
        self.trained_range_nm = trained_range_nm(contents.metadata.get("training") or {}, self.size_classes_nm, True)
        self._engine(np.zeros((1, 2, spec.n_points), dtype=np.float32))  # warm-up

    @property
    def metadata(self) -> dict[str, Any]:
        return self.contents.metadata

    @property
    def path(self) -> Path:
        return self.contents.path

    def __repr__(self) -> str:
        return f"ClusterPredictor({str(self.path)!r}, device={self.device!r}, task={self.task.name!r})"

    def raw_outputs(self, X: Any) -> dict[str, np.ndarray]:
        """Network outputs for network inputs ``X`` (n, 2, n_points), in batches of ``batch_size``."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        n = self.task.input.n_points
        if X.ndim != 3 or X.shape[1:] != (2, n) or not np.isfinite(X).all():
            raise ValueError(f"network inputs of shape {X.shape}; accepted: finite (rows, 2, {n}) from "
                             "saxs_waxs_input.network_input (use predict_pattern for raw data)")
        parts = [self._engine(X[i:i + self.batch_size]) for i in range(0, X.shape[0], self.batch_size)]
        if not parts:
            parts = [{k: v[:0] for k, v in self._engine(np.zeros((1, 2, n), np.float32)).items()}]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def predict_standardized(self, X: Any, reports: Any = None) -> list[TaskEstimate]:
        """Answers for network inputs ``X`` (n, 2, n_points); ``reports``: None or one resampling report (dict)
        per row, kept in the estimates."""
        out = self.raw_outputs(X)
        X = np.asarray(X)
        n = X.shape[0]
        reports = [None] * n if reports is None else list(reports)
        mu, sd = cluster_continuous_estimates(out["continuous"], self.contents.config)
        sd = calibrated_std(sd, self.interval)
        if self._dispersion_index is not None:  # wider where the population is broad (held-out calibration)
            sd = widened_std(sd, mu[:, self._dispersion_index], self.dispersion_slope)
        p_shape = softmax(out["family_logits"], self.shape_temperature)
        p_present = 1.0 / (1.0 + np.exp(-np.clip(out["presence_logit"].astype(np.float64), -60, 60)))
        dist = mahalanobis_distance(out["features"], self.feature_mean, self.feature_precision)
        size_index = next((i for t, i, _ in self._values if t.name == "size_nm"), None)
        p_size = (class_probabilities(mu[:, size_index], sd[:, size_index], self.size_classes_nm)
                  if size_index is not None and self.size_classes_nm.size else np.zeros((n, 0)))
        has_waxs = (X[:, 1, self.q >= SAXS_WAXS_SPLIT_Q] > 0.5).any(axis=1)
        return [self._one(i, mu, sd, p_shape, p_present, dist, p_size, has_waxs, reports[i]) for i in range(n)]

    def _one(self, i: int, mu, sd, p_shape, p_present, dist, p_size, has_waxs, report) -> TaskEstimate:
        shape = self._classes[0]
        classes = {shape.name: dict(zip(shape.labels, p_shape[i].tolist()))}
        if shape.groups:
            classes[shape.group_name] = {g: float(sum(classes[shape.name][m] for m in ms)) for g, ms in shape.groups}
        values, units, std_keys = {}, {}, {}
        for target, j, log in self._values:
            value = float(np.exp(mu[i, j])) if log else float(mu[i, j])
            std = value * float(sd[i, j]) if log else float(sd[i, j])
            values[target.name], units[target.name], std_keys[target.name] = (value, std), target.unit, target.std_key()
        _physical(values)
        flags: list[str] = []
        details: dict[str, str] = {}
        if p_present[i] < 0.5:
            flags.append("no_nanocrystals")
            details["no_nanocrystals"] = f"probability of particle scattering {p_present[i]:.2f}: looks like background"
        if dist[i] > self.ood_threshold:
            flags.append("out_of_distribution")
            details["out_of_distribution"] = (f"feature distance {dist[i]:.1f} > threshold {self.ood_threshold:.1f}: "
                                              "unlike the training patterns")
        if not has_waxs[i]:
            flags.append("no_waxs")
            details["no_waxs"] = f"no data above Q = {SAXS_WAXS_SPLIT_Q:g} 1/A: the shape rests on the SAXS alone"
        groups = classes.get(shape.group_name, classes[shape.name])
        best = max(groups.values())
        if best < self.low_confidence:
            flags.append("low_confidence")
            details["low_confidence"] = f"{shape.group_name or shape.name} confidence {best:.2f} < {self.low_confidence:.2f}"
        lo, hi = self.trained_range_nm
        size, size_std = values.get("size_nm", (np.nan, np.nan))
        status = ("no_nanocrystals" if "no_nanocrystals" in flags else "above_range" if size > hi
                  else "below_range" if size < lo else "sized")
        if status == "sized" and (size - 2 * size_std < lo or size + 2 * size_std > hi):
            flags.append("size_at_range_edge")
            details["size_at_range_edge"] = (f"{size:.2f} +- 2 x {size_std:.2f} nm reaches the edge of the trained "
                                             f"range {lo:.1f}-{hi:.1f} nm")
        size_probabilities = dict(zip(self.size_classes_nm.tolist(), p_size[i].tolist()))
        if status != "sized":  # no size and no shape where there are no particles or beyond what the model knows
            if "low_confidence" in flags:
                flags.remove("low_confidence")
                details.pop("low_confidence")
            values = {k: (np.nan, np.nan) for k in values}
            classes = {name: dict.fromkeys(p, np.nan) for name, p in classes.items()}
            size_probabilities = dict.fromkeys(size_probabilities, np.nan)
        return TaskEstimate(
            task=self.task.name, values=values, units=units, std_keys=std_keys, classes=classes,
            size_probabilities=size_probabilities, calibrated="out_of_distribution" not in flags,
            ood_distance=float(dist[i]), nanocrystal_probability=float(p_present[i]), status=status,
            trained_range_nm=self.trained_range_nm, flags=flags, flag_details=details,
            standardization=None if report is None else dict(report))

    def prepare(self, x: Any, Y: Any, *, x_unit: str = "q", wavelength: float | None = None
                ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Network inputs (n, 2, n_points) and resampling reports of patterns ``Y`` (n, len(x)) on one x axis."""
        Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
        rows, masks, reports = [], [], []
        for y in Y:
            values, mask, report = resample_saxs_waxs(x, y, self.q, x_unit=x_unit, wavelength=wavelength)
            rows.append(values)
            masks.append(mask)
            reports.append(report.to_dict())
        if not rows:
            return np.zeros((0, 2, self.q.size), np.float32), []
        return network_input(np.stack(rows), np.stack(masks)), reports

    def predict_pattern(self, x: Any, y: Any, *, x_unit: str = "q", wavelength: float | None = None) -> TaskEstimate:
        """One pattern (x in Q 1/A, or 2theta degrees with ``wavelength`` A)."""
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y has shape {y.shape}; accepted: one pattern, a 1D array (use predict_batch for many)")
        return self.predict_batch(x, y[None, :], x_unit=x_unit, wavelength=wavelength)[0]

    def predict_batch(self, x: Any, Y: Any, *, x_unit: str = "q", wavelength: float | None = None
                      ) -> list[TaskEstimate]:
        """Many patterns ``Y`` (n, len(x)) sharing one x axis."""
        X, reports = self.prepare(x, Y, x_unit=x_unit, wavelength=wavelength)
        return self.predict_standardized(X, reports)



def _physical(values: dict[str, tuple[float, float]]) -> None:
    """Keep the published values physical: a dispersion (a relative standard deviation) is not negative, and a
    volume-weighted mean diameter is not below the number-weighted one (D_V >= D_N for every size distribution);
    the network's Gaussians can cross these bounds by a fraction of their width."""
    if "dispersion" in values:
        value, std = values["dispersion"]
        values["dispersion"] = (max(value, 0.0), std)
    if "size_volume_nm" in values and "size_nm" in values:
        value, std = values["size_volume_nm"]
        values["size_volume_nm"] = (max(value, values["size_nm"][0]), std)
