"""Physics core: crystal structures, clusters, pair histograms, form factors, the Debye scattering equation,
size distributions, peak profiles, solvents and the library of simulated patterns. Imports no torch, ophyd or
Bluesky; depends only on NumPy, SciPy, ASE, xraylib, h5py and :mod:`qdots_bluesky.units`."""
