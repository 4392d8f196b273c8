"""Prediction heads: camera, dense (DPT) and track."""
