"""VGGT_npu.patch: its generator, the declarative edits of upstream files and the files it adds."""
