"""A test-only CPU emulation of `torch_npu`, written from the documented semantics of the ops vggt-npu calls.

It exists so that CPU-only CI can run the NPU code paths. It lives under tests/ (never installed, never on sys.path)
and is selected explicitly by `tests.npu_emulation.install.install_torch_npu_emulation`, which refuses to shadow a
real torch_npu. The install presents it as one released version (tests/npu_emulation/profiles.py: op signatures
from the wheel's schemas, which names exist, device-API behaviour); tests/test_npu_conformance.py checks that
against the real wheels. Numbers it produces are the documented formulas in fp32, not the NPU kernels' rounding.
"""

from . import npu, optim
from ._activation import npu_gelu
from ._fusion_attention import npu_fusion_attention
from ._infer_attention import npu_fused_infer_attention_score
from ._rotary import npu_rotary_mul

__all__ = ["npu", "npu_fused_infer_attention_score", "npu_fusion_attention", "npu_gelu", "npu_rotary_mul", "optim"]
