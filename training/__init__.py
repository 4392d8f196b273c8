"""Training stack for VGGT (Hydra + torchrun DDP trainer, datasets, losses)."""
