"""Physics core: Debye scattering simulations of quantum-dot powders. Imports no Bluesky."""
