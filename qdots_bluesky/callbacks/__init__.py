"""Bluesky glue: live sizing callback, replay from Tiled, remote consumer."""
