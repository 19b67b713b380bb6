"""Learning: augmentation of simulated patterns into realistic measurements, training settings, splits,
training of the sizing network with its calibration, and evaluation through the same
:class:`~qdots_bluesky.predictor.Predictor` that users run. Needs torch (the ``[train]`` extra)."""
