"""The synthetic preset shrunk to seconds a step on a CPU: the tests' runs and the device check's CPU run."""

SMALL_CPU_OVERRIDES = (  # 112 px images, 2 frames, 2 sequences per step, no data workers
    "data.img_size=112",
    "data.num_workers=0",
    "data.train.min_num_images=2",
    "data.train.img_nums=[2,2]",
    "data.train.aspects=[0.75,0.75]",
    "data.train.batch_size=2",
    "device=cpu",
)
