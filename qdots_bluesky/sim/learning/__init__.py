"""Learning: augmentation of simulated patterns into realistic measurements (``augment``), training settings and
splits by simulation, the training steps (``sources`` of clean patterns, ``fitting`` the network, ``calibrate``,
``train`` orchestrating them into a bundle) and evaluation through the same
:class:`~qdots_bluesky.predictor.Predictor` that users run; needs torch (the ``[train]`` extra)."""
