"""VGGT and its aggregator."""
