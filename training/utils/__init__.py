"""Trainer utilities: checkpoints, distributed setup, logging, optimisation."""
