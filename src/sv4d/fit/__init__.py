"""4D fitting: from a multi-view video set to a dynamic NeRF or 4D Gaussians (in progress)."""
