"""Training entry point: `python -m training.launch [--config-name NAME] key=value ...`.

One process trains on one device; under `torchrun --nproc_per_node N -m training.launch ...` the
processes form a DDP group on the runtime's backend (hccl / nccl / gloo). Outputs (log.txt,
checkpoints, TensorBoard scalars, the resolved config in .hydra/) go to runs/<exp_name>/ unless
`hydra.run.dir=...` says otherwise; rerunning the same command resumes from its latest checkpoint.

Presets: default (Co3D fine-tuning as upstream), perf (the published Ascend benchmark), full,
synthetic (tiny model on generated scenes, CPU in minutes). Example:
    python -m training.launch --config-name synthetic max_epochs=2 device=cpu
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from training.trainer import Trainer


@hydra.main(version_base=None, config_path="config", config_name="default")
def main(cfg: DictConfig) -> None:
    Trainer(cfg, Path(HydraConfig.get().runtime.output_dir)).run()


if __name__ == "__main__":
    main()
