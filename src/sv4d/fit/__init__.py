"""4D fitting: from a multi-view video set to a dynamic NeRF (``nerf``) or 4D Gaussians
(``gaussians``), with the SV4D 2.0 schedule; rendering and export (meshes, GLB, PLY).
Entry points: :func:`sv4d.fit.run.fit_set`, :func:`sv4d.fit.run.load_fitted`."""
