"""Test-only CPU emulation of the torch_npu APIs vggt-npu calls; see `install.py` for how a test selects it."""
