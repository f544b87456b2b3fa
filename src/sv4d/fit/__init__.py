"""4D fitting: from a multi-view video set to a dynamic NeRF (``nerf``) or 4D Gaussians
(``gaussians``), with the SV4D 2.0 schedule; rendering and export (meshes by marching cubes in
:mod:`sv4d.fit.mesh`, written as OBJ/GLB by :mod:`sv4d.io.mesh`; Gaussians as PLY by :mod:`sv4d.io.ply`).
Entry points: :func:`sv4d.fit.run.fit_set`, :func:`sv4d.fit.run.load_fitted`."""
