"""The ``qdots`` command: one parser, thin handlers that call library functions."""
from .commands import build_parser, main

__all__ = ["build_parser", "main"]
