"""What differs between the torch_npu versions the emulation can stand in for, read from each version's wheel.

tests/test_npu_conformance.py checks every field against the real wheel: op schemas against the strings of
torch_npu/lib/libtorch_npu.so, names against the wheel's modules, limits against torch_npu/_op_plugin_docs.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from tests.npu_emulation.torch_npu import _fusion_attention, _rotary

_FUSION_ATTENTION_2_1 = (
    "npu_fusion_attention(Tensor query, Tensor key, Tensor value, int head_num, str input_layout, Tensor? pse=None, "
    "Tensor? padding_mask=None, Tensor? atten_mask=None, float scale=1., float keep_prob=1., "
    "int pre_tockens=2147483647, int next_tockens=2147483647, int inner_precise=0, int[]? prefix=None, "
    "int[]? actual_seq_qlen=None, int[]? actual_seq_kvlen=None, int sparse_mode=0, bool gen_mask_parallel=True, "
    'bool sync=False, str softmax_layout="") -> (Tensor, Tensor, Tensor, Tensor, int, int, int)'
)
_GELU = "npu_gelu(Tensor input, *, str approximate='none') -> Tensor"
_INFER_ATTENTION = (  # the same in both versions
    "npu_fused_infer_attention_score(Tensor query, Tensor key, Tensor value, *, Tensor? pse_shift=None, "
    "Tensor? atten_mask=None, SymInt[]? actual_seq_lengths=None, SymInt[]? actual_seq_lengths_kv=None, "
    "Tensor? dequant_scale1=None, Tensor? quant_scale1=None, Tensor? dequant_scale2=None, Tensor? quant_scale2=None, "
    "Tensor? quant_offset2=None, Tensor? antiquant_scale=None, Tensor? antiquant_offset=None, "
    "Tensor? key_antiquant_scale=None, Tensor? key_antiquant_offset=None, Tensor? value_antiquant_scale=None, "
    "Tensor? value_antiquant_offset=None, Tensor? block_table=None, Tensor? query_padding_size=None, "
    "Tensor? kv_padding_size=None, Tensor? key_shared_prefix=None, Tensor? value_shared_prefix=None, "
    "SymInt[]? actual_shared_prefix_len=None, Tensor? query_rope=None, Tensor? key_rope=None, "
    "Tensor? key_rope_antiquant_scale=None, int num_heads=1, float scale=1.0, int pre_tokens=2147483647, "
    'int next_tokens=2147483647, str input_layout="BSH", int num_key_value_heads=0, int sparse_mode=0, '
    "int inner_precise=0, int block_size=0, int antiquant_mode=0, int key_antiquant_mode=0, "
    "int value_antiquant_mode=0, bool softmax_lse_flag=False) -> (Tensor, Tensor)"
)

# the documented limits the emulated ops enforce (their one home is the op module; the docs of 2.1.0.post17 and
# 2.14.0 state the same values)
LIMITS = MappingProxyType(
    {
        "npu_fusion_attention.head_num": _fusion_attention._MAX_HEADS,  # Nq in 1..256
        "npu_fusion_attention.head_dim": _fusion_attention._MAX_HEAD_DIM,  # D in 1..768
        "npu_fusion_attention.seq": _fusion_attention._MAX_SEQ,  # S in 1..1M
        "npu_fusion_attention.dtypes": _fusion_attention._DTYPES,
        "npu_rotary_mul.dtypes": _rotary._DTYPES,
        "npu_rotary_mul.head_dim_below": _rotary._MAX_HEAD_DIM,  # D < 896, even
        "npu_rotary_mul.batch_or_heads_below": _rotary._MAX_BATCH_OR_HEADS,  # 'half': B, N < 1000
        "npu_rotary_mul.backward_batch_times_heads": _rotary._MAX_BACKWARD_BN,  # with dcos / dsin: B * N <= 1024
    }
)


@dataclass(frozen=True)
class Profile:
    """One torch_npu release as the emulation presents it."""

    version: str
    platform: str  # the pip --platform tag its cp310 wheel exists for
    schemas: MappingProxyType  # op name -> schema string, as registered in libtorch_npu.so
    absent_npu_names: frozenset[str] = field(default_factory=frozenset)  # emulated torch_npu.npu names it lacks
    # mem_get_info(torch.device("npu")) works (index optional) or raises ValueError (index required)
    mem_get_info_index_optional: bool = True
    # npu_combine_tensors (the fused optimizers' flattening) rejects non-contiguous tensors
    combine_requires_contiguous: bool = True


PROFILES = {
    "2.1.0.post17": Profile(
        version="2.1.0.post17",
        platform="manylinux2014_x86_64",
        schemas=MappingProxyType(
            {
                "npu_fusion_attention": _FUSION_ATTENTION_2_1,
                "npu_rotary_mul": (
                    "npu_rotary_mul(Tensor input, Tensor r1, Tensor r2, str rotary_mode='half') -> Tensor"
                ),
                "npu_gelu": _GELU,
                "npu_fused_infer_attention_score": _INFER_ATTENTION,
            }
        ),
        absent_npu_names=frozenset({"set_deterministic_level"}),
        mem_get_info_index_optional=False,
        combine_requires_contiguous=False,
    ),
    "2.14.0": Profile(
        version="2.14.0",
        platform="manylinux_2_28_x86_64",
        schemas=MappingProxyType(
            {
                "npu_fusion_attention": _FUSION_ATTENTION_2_1.replace(
                    'str softmax_layout="")',
                    'str softmax_layout="", Tensor? sink=None, Tensor? dropout_mask=None, int seed=0, int offset=0)',
                ),
                "npu_rotary_mul": (
                    "npu_rotary_mul(Tensor input, Tensor r1, Tensor r2, str rotary_mode='half', Tensor? rotate=None) "
                    "-> Tensor"
                ),
                "npu_gelu": _GELU,
                "npu_fused_infer_attention_score": _INFER_ATTENTION,
            }
        ),
    ),
}
NEWEST = "2.14.0"
