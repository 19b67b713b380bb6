"""Physics core: from a crystal structure to the X-ray powder pattern of a population of quantum dots, with the
solvent around them and the instrument that measures them.

Structures (:mod:`.materials`) -> clusters (:mod:`.clusters`; faceted habits of cubic structures in :mod:`.habits`) -> exact pair histograms (:mod:`.pair_histogram`,
cached by :mod:`.cache`) -> the Debye scattering equation (:mod:`.dse`, form factors in :mod:`.form_factors`) ->
populations (:mod:`.population`: the one population kernel; :mod:`.distribution` gives the log-normal weights) ->
the training library (:mod:`.library`) and the per-cluster basis for continuous populations (:mod:`.cluster_basis`,
:mod:`.lattice_jitter`). Measured-pattern physics: peak profiles (:mod:`.profiles`), laboratory-instrument effects
(:mod:`.instrument`, :mod:`.reflections`), solvents (:mod:`.solvents`); Q and 2theta grids in :mod:`.grids`.
Metal nanoclusters (issue 18): fcc families from ``ase.cluster`` (:mod:`.metal_clusters`), symmetry orbits for fast
binned histograms (:mod:`.cluster_symmetry`), SAXS + WAXS per-cluster bases, populations and mixtures (:mod:`.metal_basis`).
Imports no torch, ophyd or Bluesky; depends only on NumPy, SciPy, ASE, xraylib, h5py and :mod:`qdots_bluesky.units`.
"""
