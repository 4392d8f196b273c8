"""Training entry point: `python -m training.launch [--config-name NAME] key=value ...`.

One process trains on one device; under `torchrun --nproc_per_node N -m training.launch ...` the
processes form a DDP group on the runtime's backend (hccl / nccl / gloo). Outputs (log.txt,
checkpoints, TensorBoard scalars, the resolved config in .hydra/) go to runs/<exp_name>/ unless
`hydra.run.dir=...` says otherwise; rerunning the same command resumes from its latest checkpoint.

Presets: default (Co3D fine-tuning as upstream), perf (the published Ascend benchmark), full,
synthetic (tiny model on generated scenes, CPU in minutes). Example:
    python -m training.launch --config-name synthetic max_epochs=2 device=cpu

Failures: an exception on any rank is posted to the other ranks, which end within seconds (see
training/utils/peer_watch.py), and is written to torchrun's per-rank error file (TORCHELASTIC_ERROR_FILE),
which torchrun reports as the root cause; the process group is destroyed on every exit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch.distributed.elastic.multiprocessing.errors import record

from training.config_check import config_problems, problems_message
from training.trainer import Trainer
from training.utils import distributed


@record
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Build the trainer and run it; an exception is posted to the other ranks, then raised (and recorded)."""
    try:
        Trainer(cfg, run_dir).run()
    except BaseException as error:
        distributed.report_failure(error)
        raise
    finally:
        distributed.teardown()


@hydra.main(version_base=None, config_path="config", config_name="default")
def main(cfg: DictConfig) -> None:
    problems = config_problems(cfg)  # the Trainer refuses them too; here they are shown without a traceback
    if problems:
        print(f"training.launch: error: {problems_message(problems)}", file=sys.stderr)
        sys.exit(2)
    train(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
