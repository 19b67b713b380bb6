"""The ``qdots`` parser and entry point: one parser, one subcommand module per command group."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from .bluesky_commands import add_demo, add_replay, add_serve
from .common import fail, missing_extra_message
from .fit import add_fit
from .predict import add_predict
from .simulate import add_library, add_simulate
from .training import add_evaluate, add_train


def build_parser() -> argparse.ArgumentParser:
    """The ``qdots`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="qdots", description="Quantum-dot sizing from wide-angle X-ray scattering: "
                                     "DSE simulation, training and live sizing in Bluesky.")
    parser.add_argument("--version", action="version", version=f"qdots-bluesky {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_simulate(sub)
    add_library(sub)
    add_predict(sub)
    add_fit(sub)
    add_train(sub)
    add_evaluate(sub)
    add_demo(sub)
    add_replay(sub)
    add_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``qdots`` with ``argv``; returns the exit status (2: bad input, or a missing optional extra)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc, args.command)
        if message is None:
            raise
        return fail(args.command, message)
    except ValueError as exc:
        return fail(args.command, str(exc))
