"""What the predictor answers for one pattern: :class:`SizeEstimate`, its statuses and flags, in words."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Every flag a SizeEstimate can carry, and what it means.
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
}
#: Every status a SizeEstimate can have, and what it means.
STATUSES: dict[str, str] = {
    "sized": "nanocrystals found and sized within the trained range",
    "no_nanocrystals": "no nanocrystal scattering detected (pure solvent, empty capillary, background): no size",
    "above_range": "the dots are larger than the model's trained range: no size, only the bound",
    "below_range": "the dots are smaller than the model's trained range: no size, only the bound",
}
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
        }

    def no_size_reason(self) -> str:
        """Why there is no size, in words ("no nanocrystals detected", "> 11.0 nm: ..."); "" for a sized pattern."""
        lo, hi = self.trained_range_nm or (float("nan"), float("nan"))
        return {"no_nanocrystals": "no nanocrystals detected",
                "above_range": f"> {hi:.1f} nm: larger than the trained range {lo:.1f}-{hi:.1f} nm, no size given",
                "below_range": f"< {lo:.1f} nm: smaller than the trained range {lo:.1f}-{hi:.1f} nm, no size given",
                }.get(self.status, "")

    def summary(self) -> str:
        """One line for people: size +- std, class, dispersion, confidence, flags (or why there is no size)."""
        flags = "; ".join(f"{f} ({self.flag_details[f]})" if f in self.flag_details else f for f in self.flags)
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


def _size_key(value: float) -> str:
    return f"{value:.1f}" if abs(value * 10 - round(value * 10)) < 1e-9 else f"{value:g}"


def _disp_key(value: float) -> str:
    return f"{value:.2f}" if abs(value * 100 - round(value * 100)) < 1e-9 else f"{value:g}"
