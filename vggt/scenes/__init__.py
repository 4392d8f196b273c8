"""Posed multi-view scenes on disk: the Co3D files and the custom JSON / COLMAP layout.

Format readers live here, in the inference package, so that training (`training.data`) and evaluation
(`vggt.evaluation`) read the same files the same way; training imports them, never the reverse.
"""
