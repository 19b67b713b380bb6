"""The ``qdots`` command: one parser (:mod:`.main`), thin handlers per command group that call library functions
(:mod:`.simulate`: simulate, library; :mod:`.predict`; :mod:`.fit`; :mod:`.training`: train, evaluate; :mod:`.bluesky_commands`:
demo, replay, serve; :mod:`.common`: the shared --device option and errors)."""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
