"""Camera, geometry and image-loading utilities, importable under upstream's `vggt.utils.*` paths."""
