"""Data: animated 3D assets into multi-view video sets, curation."""
