"""vggt-npu: VGGT for Ascend NPUs, NVIDIA GPUs and CPUs."""

__version__ = "0.1.0"
