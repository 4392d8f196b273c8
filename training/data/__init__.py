"""Training data: datasets (Co3D, custom scenes, synthetic scenes), the dynamic batch sampler, augmentations.

Nothing is imported here, so that `python -m training.data.synthetic` runs its module once (no runpy warning);
build_dataset lives in training.data.build.
"""
