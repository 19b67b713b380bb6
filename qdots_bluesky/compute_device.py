"""Which device runs a network: "cuda", "cpu" (PyTorch) or "numpy" (the NumPy engines, no PyTorch needed).

Shared by every predictor (:mod:`qdots_bluesky.predictor`, :mod:`qdots_bluesky.cluster_predictor`) and the CLI.
"""
from __future__ import annotations

from typing import Any


def resolve_device(device: Any = None) -> str:
    """``None``/"auto" -> "cuda" if available else "cpu"; "numpy" stays; other strings are checked by torch."""
    if isinstance(device, str) and device.lower() == "numpy":
        return "numpy"
    import torch

    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not known ({exc}); accepted: 'auto', 'cpu', 'cuda', 'cuda:N', "
                         "'mps' or 'numpy'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: PyTorch sees no CUDA GPU here; use 'cpu' or 'numpy'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: MPS is not available here; use 'cpu' or 'numpy'")
    return str(dev)


def default_device() -> str:
    """The device the ``qdots`` commands use by default ("auto"): "cuda" where PyTorch is installed and sees a GPU,
    else "numpy" (the same network and weights evaluated with NumPy on the CPU; PyTorch not needed).

    PyTorch is imported only where an NVIDIA driver is present, so the check costs nothing on a CPU machine.
    """
    import os
    import shutil

    if not (os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")):
        return "numpy"
    try:
        import torch
    except ImportError:
        return "numpy"
    return "cuda" if torch.cuda.is_available() else "numpy"
