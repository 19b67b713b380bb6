"""What every ``qdots`` subcommand shares: the ``--device`` option, argparse types, errors, missing extras."""
from __future__ import annotations

import argparse
import sys

#: Help of ``--device``, the same for every command that runs the network.
DEVICE_HELP = ("where the network runs: 'auto' (default) = cuda when PyTorch is installed and sees a GPU; else, for "
               "predict, the CPU with the NumPy engine (the same network and weights, no PyTorch needed) and, for demo, "
               "replay and serve, PyTorch on the CPU when it is installed (its numbers do not depend on how events are "
               "batched, so a replay reproduces live numbers bit for bit); 'numpy' = always the NumPy engine; 'cpu', "
               "'cuda', 'cuda:N', 'mps' = PyTorch on that device (needs the [train] or [all] extra). The engines agree "
               "to float32 rounding")

#: Third-party modules -> the extra of ``pip install 'qdots-bluesky[EXTRA]'`` that provides them.
EXTRAS: dict[str, str] = {
    "torch": "train",
    "ase": "sim", "xraylib": "sim", "tqdm": "sim", "matplotlib": "sim",
    "bluesky": "bluesky", "ophyd": "bluesky", "event_model": "bluesky", "tiled": "bluesky",
    "bluesky_tiled_plugins": "bluesky", "databroker": "bluesky", "zmq": "bluesky",
}


def add_device_option(p: argparse.ArgumentParser) -> None:
    """Add ``--device`` (default auto) with :data:`DEVICE_HELP`."""
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def resolve_cli_device(device: str, *, batch_independent: bool = False) -> str:
    """'auto' -> :func:`qdots_bluesky.predictor.default_device`; anything else unchanged.

    ``batch_independent``: the numbers must not depend on which patterns share a batch (live sizing and its replay):
    then 'auto' on a machine without a GPU is PyTorch on the CPU when PyTorch is installed, not the NumPy engine,
    whose float32 matrix products change in the last bits with the batch's other rows.
    """
    if device.lower() != "auto":
        return device
    from ..compute_device import default_device

    chosen = default_device()
    if chosen == "numpy" and batch_independent:
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            return "cpu"
    return chosen


def fail(command: str, message: str) -> int:
    """Print ``qdots COMMAND: error: MESSAGE`` to stderr and return exit status 2."""
    print(f"qdots {command}: error: {message}", file=sys.stderr)
    return 2


#: Commands -> the extras they need as a whole (predict needs none: its options name theirs by module).
COMMAND_EXTRAS: dict[str, str] = {
    "simulate": "sim", "library": "sim", "train": "train", "evaluate": "train",
    "demo": "bluesky,sim", "replay": "bluesky", "serve": "bluesky",
}


def missing_extra_message(exc: ModuleNotFoundError, command: str | None = None) -> str | None:
    """A one-line message naming the extra to install for a missing third-party module, or None when the module
    is not one an extra provides (then it is a real error)."""
    name = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(name)
    if extra is None:
        return None
    extra = COMMAND_EXTRAS.get(command or "", extra)
    return (f"this needs the Python package {name!r}, which is not installed; install it with "
            f"pip install 'qdots-bluesky[{extra}]' (or [all])")


def float_list(text: str) -> list[float]:
    """'2:10:0.5' (start:stop:step, inclusive) or '0.05,0.1' -> floats (an argparse type)."""
    import numpy as np

    if ":" in text:
        try:
            start, stop, step = (float(v) for v in text.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"range {text!r} must be START:STOP:STEP (three numbers)") from None
        if step <= 0 or stop < start:
            raise argparse.ArgumentTypeError(f"range {text!r} must be START:STOP:STEP with STEP > 0 and STOP >= START")
        return [round(float(v), 8) for v in np.arange(start, stop + step / 2, step)]
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.05,0.1 or START:STOP:STEP, got {text!r}") from None


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted: an integer >= 0")
    return value
