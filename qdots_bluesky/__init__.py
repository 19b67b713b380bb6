"""Live quantum-dot sizing from wide-angle X-ray scattering, for Bluesky."""

__version__ = "0.1.0"
