"""What the predictor answers for one pattern: :class:`SizeEstimate` (a quantum-dot sizer) or :class:`TaskEstimate`
(any other task a bundle declares: class probabilities and values +- 1 sigma), their statuses and flags, in words."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Every flag an estimate (SizeEstimate or TaskEstimate) can carry, and what it means.
FLAGS: dict[str, str] = {
    "no_nanocrystals": "the presence head gives a probability below 0.5 that the pattern holds any nanocrystal "
                       "scattering of the trained kind: it looks like pure solvent, an empty capillary or "
                       "background, or (together with out_of_distribution) like a crystal other than the model's; "
                       "the size is meaningless",
    "out_of_distribution": "the Mahalanobis distance of the pooled network features to the training features exceeds "
                           "the bundle's threshold: the pattern is unlike the training data (empty or pure solvent, "
                           "not a rock-salt crystal, sizes far outside the classes, another instrument or processing); "
                           "do not trust the size",
    "low_confidence": "the calibrated probability of the most probable size class is below the predictor's "
                      "low_confidence threshold (default 0.5)",
    "truncated_q_range": "the data cover less than 95 % of the model's Q grid; the missing part was padded with the "
                         "mean of the outermost points; accuracy drops as Q_max falls or Q_min rises (the evaluation "
                         "report's q_max and q_min curves give it for a model: qdots evaluate)",
    "beyond_trained_q_range": "the data start above, or end below, every Q range the network was trained with (the "
                              "bundle's augmentation: starts up to 1.7, ends from 3.0 1/A for the shipped model): the "
                              "first reflections or too much of the pattern are missing, and the size can be off by "
                              "more than its uncertainty (measured colloids cut to start at 2.0 1/A read up to 0.28 nm "
                              "off: README, *Recorded another way*)",
    "padded": "a few grid points (under 5 % of the grid) at a Q end were padded; usually harmless (padding only "
              "above the last Q the network reads is not flagged)",
    "coarse_sampling": "the data's median Q step is more than 10 times the grid step, so the grid was rebuilt from "
                       "bins nearly as wide as the peaks of the largest dots; accuracy drops for the largest sizes, "
                       "whose peaks then span one or two bins. Steps of the bundle's coarse_min_q_step or more are "
                       "sized by its coarse-sampling specialist where the bundle has one (the evaluation report's "
                       "n_points curves give the accuracy for a model: qdots evaluate)",
    "size_at_range_edge": "the estimate reaches the edge of the trained range (continuous models: its 2-sigma interval; "
                          "class models: the smallest or largest class); the true size may "
                          "lie outside the trained range",
    "no_waxs": "SAXS + WAXS models: no grid point above 1 1/A was measured; the shape then rests on the SAXS alone, "
               "which hardly tells the families apart (the calibrated shape probabilities say so)",
}
#: Every status a SizeEstimate can have, and what it means.
STATUSES: dict[str, str] = {
    "sized": "nanocrystals found and sized within the trained range",
    "no_nanocrystals": "no nanocrystal scattering detected (pure solvent, empty capillary, background): no size",
    "above_range": "the dots are larger than the model's trained range: no size, only the bound",
    "below_range": "the dots are smaller than the model's trained range: no size, only the bound",
}
#: Data keys of a SizeEstimate that hold one float each (NaN when unknown), in its field order.
SIZE_FLOAT_KEYS = ("size_nm", "size_std_nm", "size_volume_nm", "size_volume_std_nm", "size_class_nm",
                   "size_regression_nm", "dispersion", "dispersion_std", "dispersion_confidence", "strain", "strain_std",
                   "confidence", "ood_distance", "nanocrystal_probability")


@dataclass
class SizeEstimate:
    """The size of the quantum dots in one pattern (diameters in nm); see the module docstring."""

    size_nm: float
    size_std_nm: float
    size_class_nm: float
    size_regression_nm: float
    confidence: float
    probabilities: dict[float, float]
    dispersion: float
    dispersion_confidence: float
    dispersion_probabilities: dict[float, float]
    ood_distance: float
    nanocrystal_probability: float | None = None
    size_volume_nm: float | None = None
    size_volume_std_nm: float | None = None
    dispersion_std: float | None = None
    strain: float | None = None
    strain_std: float | None = None
    network: str = "main"
    status: str = "sized"
    trained_range_nm: tuple[float, float] | None = None
    flags: list[str] = field(default_factory=list)
    flag_details: dict[str, str] = field(default_factory=dict)
    standardization: dict[str, Any] | None = None
    # the instrument resolution the network was told, (Gaussian, Lorentzian) FWHM in 1/A; None: unknown
    instrument_fwhm_q: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; class values become string keys ("5.5", "0.10")."""
        def finite(v: float | None) -> float | None:
            return None if v is None or not np.isfinite(v) else v

        return {
            "status": self.status,
            "size_nm": finite(self.size_nm),
            "size_std_nm": finite(self.size_std_nm),
            "size_class_nm": finite(self.size_class_nm),
            "size_regression_nm": finite(self.size_regression_nm),
            "confidence": finite(self.confidence),
            "probabilities": {_size_key(k): v for k, v in self.probabilities.items()},
            "dispersion": finite(self.dispersion),
            "dispersion_confidence": finite(self.dispersion_confidence),
            "dispersion_probabilities": {_disp_key(k): v for k, v in self.dispersion_probabilities.items()},
            "ood_distance": finite(self.ood_distance),
            "nanocrystal_probability": finite(self.nanocrystal_probability),
            "size_volume_nm": finite(self.size_volume_nm),
            "size_volume_std_nm": finite(self.size_volume_std_nm),
            "dispersion_std": finite(self.dispersion_std),
            "strain": finite(self.strain),
            "strain_std": finite(self.strain_std),
            "network": self.network,
            "trained_range_nm": None if self.trained_range_nm is None else list(self.trained_range_nm),
            "flags": list(self.flags),
            "flag_details": dict(self.flag_details),
            "standardization": None if self.standardization is None else dict(self.standardization),
            "instrument_fwhm_q": None if self.instrument_fwhm_q is None else list(self.instrument_fwhm_q),
        }

    def record(self) -> dict[str, Any]:
        """The published values under their data keys (the ``qdots_size`` layout of a quantum-dot sizer)."""
        out = {k: float("nan") if getattr(self, k) is None else float(getattr(self, k)) for k in SIZE_FLOAT_KEYS}
        out["probabilities"] = [float(v) for v in self.probabilities.values()]
        return out

    def no_size_reason(self) -> str:
        """Why there is no size, in words ("no nanocrystals detected", "> 11.0 nm: ..."); "" for a sized pattern."""
        return _no_size_reason(self.status, self.trained_range_nm, "nanocrystals")

    def summary(self) -> str:
        """One line for people: size +- std, class, dispersion, confidence, flags (or why there is no size)."""
        flags = _flags_text(self.flags, self.flag_details)
        if self.status != "sized":
            return f"{self.no_size_reason()}; flags: {flags or 'none'}"
        confidence = "not assessed" if not np.isfinite(self.confidence) else f"{self.confidence:.2f}"
        if self.size_volume_nm is None:
            return (f"{self.size_nm:.2f} ± {self.size_std_nm:.2f} nm (class {self.size_class_nm:.1f} nm), "
                    f"dispersion {self.dispersion:.2f}, confidence {confidence}, flags: {flags or 'none'}")
        return (f"{self.size_nm:.2f} ± {self.size_std_nm:.2f} nm (volume-weighted {self.size_volume_nm:.2f} ± "
                f"{self.size_volume_std_nm:.2f} nm, class {self.size_class_nm:.1f} nm), dispersion {self.dispersion:.2f} "
                f"± {self.dispersion_std:.2f}, strain {100 * self.strain:+.2f} ± {100 * self.strain_std:.2f} %, "
                f"confidence {confidence}, flags: {flags or 'none'}")


@dataclass
class TaskEstimate:
    """The answer of a bundle's task (:mod:`qdots_bluesky.models.task`) for one pattern.

    ``values``: target name -> (value, 1-sigma uncertainty) in the target's unit (``units``); ``classes``: target
    (or group) name -> {label: calibrated probability}; ``size_probabilities``: the size classes' probabilities
    (nm -> probability) from the size's Gaussian; all NaN where the status is not "sized" (no particles, or beyond
    the trained sizes): no shape and no size there. The rest as in :class:`SizeEstimate`.
    """

    task: str
    values: dict[str, tuple[float, float]]
    units: dict[str, str]
    std_keys: dict[str, str]
    classes: dict[str, dict[str, float]]
    size_probabilities: dict[float, float]
    ood_distance: float
    nanocrystal_probability: float | None = None
    status: str = "sized"
    trained_range_nm: tuple[float, float] | None = None
    network: str = "main"
    flags: list[str] = field(default_factory=list)
    flag_details: dict[str, str] = field(default_factory=dict)
    standardization: dict[str, Any] | None = None
    calibrated: bool = True  # False: the pattern is unlike the training data, the confidences are not published

    @property
    def size_nm(self) -> float:
        return self.values.get("size_nm", (np.nan, np.nan))[0]

    @property
    def size_std_nm(self) -> float:
        return self.values.get("size_nm", (np.nan, np.nan))[1]

    def best(self, name: str) -> tuple[str, float]:
        """The most probable label of a class target (or group) and its calibrated probability; ("", NaN) when not
        sized, the probability NaN where the pattern is unlike the training data (``calibrated`` False)."""
        probabilities = self.classes[name]
        if self.status != "sized" or not probabilities:
            return "", float("nan")
        label = max(probabilities, key=probabilities.get)
        return label, float(probabilities[label]) if self.calibrated else float("nan")

    @property
    def size_class_nm(self) -> float:
        if self.status != "sized" or not self.size_probabilities:
            return float("nan")
        return float(max(self.size_probabilities, key=self.size_probabilities.get))

    def record(self) -> dict[str, Any]:
        """The published values under their data keys (:func:`qdots_bluesky.callbacks.schema.output_keys`)."""
        out: dict[str, Any] = {}
        for name, (value, std) in self.values.items():
            out[name], out[self.std_keys[name]] = float(value), float(std)
        for name, probabilities in self.classes.items():
            label, p = self.best(name)
            out[name], out[f"{name}_confidence"] = label, p
            out[f"{name}_probabilities"] = [float(v) for v in probabilities.values()]
        out["size_class_nm"] = self.size_class_nm
        out["probabilities"] = [float(v) for v in self.size_probabilities.values()]
        out["ood_distance"] = float(self.ood_distance)
        out["nanocrystal_probability"] = (float("nan") if self.nanocrystal_probability is None
                                          else float(self.nanocrystal_probability))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the record's values (NaN as None), the probabilities by label, status and flags."""
        def finite(v: Any) -> Any:
            return None if isinstance(v, float) and not np.isfinite(v) else v

        out: dict[str, Any] = {"task": self.task, "status": self.status}
        out.update({k: finite(v) for k, v in self.record().items() if not isinstance(v, list)})
        for name, probabilities in self.classes.items():
            out[f"{name}_probabilities"] = {k: finite(float(v)) for k, v in probabilities.items()}
        out["probabilities"] = {_size_key(k): finite(float(v)) for k, v in self.size_probabilities.items()}
        out.update(units=dict(self.units), network=self.network,
                   trained_range_nm=None if self.trained_range_nm is None else list(self.trained_range_nm),
                   flags=list(self.flags), flag_details=dict(self.flag_details),
                   standardization=None if self.standardization is None else dict(self.standardization))
        return out

    def no_size_reason(self) -> str:
        """Why there is no answer, in words; "" for a sized pattern."""
        return _no_size_reason(self.status, self.trained_range_nm, "particles")

    def summary(self) -> str:
        """One line for people: the classes' best labels, each value +- sigma, flags (or why there is none)."""
        flags = _flags_text(self.flags, self.flag_details)
        if self.status != "sized":
            return f"{self.no_size_reason()}; flags: {flags or 'none'}"
        parts = []
        for name in self.classes:
            label, p = self.best(name)
            parts.append(f"{name} {label} ({p:.2f})" if np.isfinite(p) else f"{name} {label} (not calibrated here)")
        for name, (value, std) in self.values.items():
            unit = self.units.get(name, "")
            unit = "" if unit in ("", "dimensionless") else f" {unit}"
            parts.append(f"{name} {value:.3g} ± {std:.2g}{unit}" if not unit else f"{name} {value:.2f} ± {std:.2f}{unit}")
        return f"{', '.join(parts)}; flags: {flags or 'none'}"


def _flags_text(flags: list[str], details: dict[str, str]) -> str:
    """The flags with their reasons, for a summary line."""
    return "; ".join(f"{f} ({details[f]})" if f in details else f for f in flags)


def _no_size_reason(status: str, trained_range_nm: tuple[float, float] | None, what: str) -> str:
    lo, hi = trained_range_nm or (float("nan"), float("nan"))
    return {"no_nanocrystals": f"no {what} detected",
            "above_range": f"> {hi:.1f} nm: larger than the trained range {lo:.1f}-{hi:.1f} nm, no size given",
            "below_range": f"< {lo:.1f} nm: smaller than the trained range {lo:.1f}-{hi:.1f} nm, no size given",
            }.get(status, "")


def _size_key(value: float) -> str:
    return f"{value:.1f}" if abs(value * 10 - round(value * 10)) < 1e-9 else f"{value:g}"


def _disp_key(value: float) -> str:
    return f"{value:.2f}" if abs(value * 100 - round(value * 100)) < 1e-9 else f"{value:g}"
