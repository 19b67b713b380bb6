"""Simulation, in three rooms: the DSE physics core (:mod:`.physics`), the learning pipeline that trains and
evaluates the sizing model on simulated data (:mod:`.learning`), and a simulated beamline of ophyd devices
(:mod:`.beamline`). Importing this package imports none of them."""
