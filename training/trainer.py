"""The training loop: forward, loss, backward, clip, step, log, checkpoint; one process or DDP.

Device, precision, kernels and the distributed backend come from `vggt.runtime`; nothing here
names a backend. Per step there is no host synchronisation except one flag read where the optimizer
cannot skip a non-finite step on the device (CPU AdamW, NpuFusedAdamW; see `step_unless_nonfinite`, timed
by benchmarks/bench_train.py); losses are summed on the device and read every `log_freq` steps.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from training.config_check import check_resume_state, check_training_config
from training.data.build import build_dataset
from training.data.normalize import normalize_camera_extrinsics_and_points_batch
from training.data.sampler import DynamicBatchSampler
from training.loss import MultitaskLoss
from training.utils import checkpoint, distributed
from training.utils.logging import (
    LOGGER,
    DeviceMeters,
    HostMeter,
    TensorBoard,
    format_line,
    process_memory_gb,
    setup_logging,
)
from training.utils.optim import (
    GradientClipper,
    freeze,
    hold_frozen_layers_in,
    keep_frozen_in_eval,
    lr_at,
    step_unless_nonfinite,
)
from training.utils.peer_watch import rank_label
from vggt import runtime
from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.weights import WeightsMismatchError, load_weights, read_state_dict

CKPT_DIR = "ckpts"


def model_from_training_config(model_cfg: DictConfig) -> VGGT:
    """VGGT from `model.config` (a preset name or a dict of VGGTConfig fields) and the head switches."""
    base = model_cfg.config
    config = VGGTConfig.preset(base) if isinstance(base, str) else VGGTConfig.from_dict(dict(base))
    heads = {f"enable_{h}": bool(model_cfg[f"enable_{h}"]) for h in ("camera", "depth", "point", "track")}
    return VGGT(config=VGGTConfig.from_dict({**config.to_dict(), **heads}))


def batch_rows(batch: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    """Sequences start..end of every tensor and list of `batch` (other values as they are)."""
    return {k: v[start:end] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}


def split_batch(batch: dict[str, Any], chunks: int, paired_halves: bool = False) -> list[dict[str, Any]]:
    """Split along the batch dim into `chunks` parts whose sizes differ by at most one (no sample dropped).

    paired_halves: the batch is sequences then their reversals (with_reversed_frames); every part keeps that layout,
    each of its sequences with its reversal, so the model can share their patch embedding (second_half_reversed).
    """
    size = batch["images"].shape[0]
    if paired_halves:
        halves = [split_batch(batch_rows(batch, a, b), chunks) for a, b in ((0, size // 2), (size // 2, size))]
        return [concat_batches(first, second) for first, second in zip(*halves)]
    bounds = torch.linspace(0, size, chunks + 1).round().long().tolist()
    return [batch_rows(batch, a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def concat_batches(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The sequences of `first` then those of `second` (tensors and lists; other values from `first`)."""
    return {
        k: torch.cat((v, second[k])) if isinstance(v, torch.Tensor) else v + second[k] if isinstance(v, list) else v
        for k, v in first.items()
    }


def with_reversed_frames(batch: dict[str, Any]) -> dict[str, Any]:
    """Upstream's repeat_batch: the batch's sequences, then the same sequences with their frames in reverse order
    (another frame becomes the reference frame 0). Every tensor of a batch without tracks is per frame ([B, S, ...]);
    training.config_check refuses repeat_batch with the track loss, as upstream's repetition leaves tracks out."""
    reversed_frames = {k: v.flip(1) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return concat_batches(batch, reversed_frames)


def check_heads_have_losses(model: VGGT, loss_cfg: DictConfig) -> None:
    """A trainable head without a loss gets no gradient: wasted compute, and DDP fails on unused parameters."""
    for name in ("camera", "depth", "point", "track"):
        head = getattr(model, f"{name}_head")
        if head is not None and loss_cfg.get(name) is None and any(p.requires_grad for p in head.parameters()):
            raise ValueError(
                f"model.enable_{name}=true but loss.{name} is null: the {name} head would get no gradient; "
                f"set loss.{name}, or model.enable_{name}=false, or freeze it via optim.frozen"
            )


def check_track_data(cfg: DictConfig) -> None:
    """The track loss needs ground-truth tracks in every split it runs on: data.<split>.track_num > 0."""
    if cfg.loss.get("track") is None:
        return
    for split in ("train", "val"):
        split_cfg = cfg.data.get(split)
        if split_cfg is not None and int(split_cfg.get("track_num", 0)) <= 0:
            raise ValueError(
                f"loss.track is set but data.{split}.track_num is {split_cfg.get('track_num', 0)}: the {split} "
                f"batches would have no ground-truth tracks; set data.{split}.track_num (e.g. 1024) "
                "or loss.track=null"
            )


def frozen_without_weights(model: VGGT, frozen: list[str], loaded: set[str]) -> list[str]:
    """The frozen modules some of whose tensors (parameters or buffers) were not loaded from weights."""
    state_keys = list(model.state_dict())
    return [name for name in frozen if any(k.startswith(name + ".") and k not in loaded for k in state_keys)]


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        check_training_config(cfg)  # before any process group, model or data exists
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = distributed.setup(
            cfg.device, cfg.distributed.timeout_minutes, cfg.distributed.peer_timeout_seconds, cfg.deterministic
        )
        self.device = self.dist.device
        runtime.configure_process(self.device, deterministic=cfg.deterministic, allow_tf32=cfg.allow_tf32)
        runtime.seed_everything(cfg.seed)  # same initial weights on every rank (DDP also broadcasts them)
        setup_logging(self.run_dir / "log.txt", self.dist.is_main)
        LOGGER.info(
            f"run dir {self.run_dir} | device {self.device} ({runtime.device_name(self.device)}) | "
            f"world size {self.dist.world_size}"
        )

        check_track_data(cfg)
        self.model = model_from_training_config(cfg.model)
        loaded = self.load_initial_weights(cfg.model.init_weights) if cfg.model.init_weights else set()
        self.frozen = freeze(self.model, list(cfg.optim.frozen))
        if self.frozen:
            LOGGER.info(f"frozen modules: {self.frozen}")
        check_heads_have_losses(self.model, cfg.loss)
        self.model.aggregator.set_activation_checkpointing(bool(cfg.model.activation_checkpointing))
        self.model.to(self.device)
        self.loss = MultitaskLoss(**OmegaConf.to_container(cfg.loss, resolve=True))
        self.track_loss = cfg.loss.get("track") is not None
        # as upstream, the switch under data.train also doubles validation batches (its one _process_batch)
        self.repeat_batch = bool(cfg.data.train.get("repeat_batch", False))
        if self.repeat_batch:
            LOGGER.info("repeat_batch: every batch also trains its sequences with their frames reversed")

        trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("optim.frozen freezes every parameter: nothing to train")
        # zeroed in place, not set to None: lets NPUs use NpuFusedAdamW (its documented constraint)
        self.optimizer = runtime.adamw(
            trainable,
            self.device,
            lr=cfg.optim.lr,
            weight_decay=cfg.optim.weight_decay,
            betas=tuple(cfg.optim.betas),
            eps=cfg.optim.eps,
            zero_grad_set_to_none=False,
            gradients_are_bucket_views=self.dist.world_size > 1,
        )
        self.clipper = GradientClipper(
            self.model, OmegaConf.to_container(cfg.optim.clip, resolve=True), cfg.optim.clip_rule
        )
        LOGGER.info(f"gradient clipping: rule {cfg.optim.clip_rule}, groups {[g[0] for g in self.clipper.groups]}")
        self.amp_dtype = runtime.parse_dtype(cfg.optim.amp_dtype, self.device)
        self.scaler = runtime.grad_scaler(self.device, self.amp_dtype)
        amp = str(self.amp_dtype).removeprefix("torch.")
        LOGGER.info(f"autocast dtype {amp} (optim.amp_dtype {cfg.optim.amp_dtype})")

        if not self.dist.is_main:
            distributed.barrier()  # rank 0 prepares shared files (generated scenes) first
        self.train_set = build_dataset(cfg.data.train, cfg.data)
        self.val_set = build_dataset(cfg.data.val, cfg.data) if cfg.data.get("val") else None
        if self.dist.is_main:
            distributed.barrier()
            for dataset in (self.train_set, self.val_set):
                for warning in dataset.build_warnings() if dataset is not None else ():
                    LOGGER.warning(warning)
        self.epoch, self.step, self.global_step = 0, 0, 0
        if self.resume():
            loaded = set(self.model.state_dict())
        self.check_same_start_on_every_rank()
        self.check_frozen_weights(loaded)

        self.ddp = None
        if self.dist.world_size > 1:
            self.ddp = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type != "cpu" else None,
                find_unused_parameters=cfg.distributed.find_unused_parameters,
                # views save a gradient-sized copy and buffer per step; runtime.adamw then takes foreach, not NPU fused
                gradient_as_bucket_view=True,
                bucket_cap_mb=cfg.distributed.bucket_cap_mb,
            )
        # after DDP's broadcast of the loaded float32 weights; checkpoints save the originals in place of the held
        # copies, and only rank 0 writes them: the other ranks keep none
        self.frozen_originals: dict[str, torch.Tensor] = {}
        if runtime.autocast_computes_in(self.device, self.amp_dtype):
            self.frozen_originals = hold_frozen_layers_in(
                self.model, "aggregator", self.amp_dtype, keep_originals=self.dist.is_main
            )
            if self.frozen_originals:
                LOGGER.info(
                    f"frozen aggregator: {len(self.frozen_originals)} linear and convolution tensors held in {amp}, "
                    "which autocast computes them in (checkpoints keep them as loaded)"
                )
        self.tensorboard = TensorBoard(self.run_dir / "tensorboard" if self.dist.is_main else None)

    # weights and checkpoints --------------------------------------------------------------------
    def load_initial_weights(self, source: str) -> set[str]:
        """Start from a model state dict (upstream model.pt, safetensors, or a training checkpoint).

        Returns the model keys that were loaded; a file that fits no tensor of the model is an error.
        """
        state = read_state_dict(Path(source))
        report = load_weights(self.model, state, strict=False, source=source)
        if report.loaded_keys == 0:
            raise ValueError(f"model.init_weights {source} loaded no tensor into the model\n{report.describe()}")
        LOGGER.info(
            report.describe() if not report.ok else f"initial weights {source}: all {report.loaded_keys} tensors loaded"
        )
        mismatched = {m["key"] for m in report.shape_mismatch}
        return {k for k in self.model.state_dict() if k in state and k not in mismatched}

    def check_frozen_weights(self, loaded: set[str]) -> None:
        """Frozen modules never train: random weights there are an error unless model.random_frozen_weights says so."""
        random = frozen_without_weights(self.model, self.frozen, loaded)
        if not random:
            return
        if self.cfg.model.random_frozen_weights:
            LOGGER.warning(f"frozen modules {random} keep random weights (model.random_frozen_weights=true)")
            return
        raise ValueError(
            f"frozen modules {random} received no weights (model.init_weights={self.cfg.model.init_weights}): "
            "they would stay random while the rest trains on top of them. Pass the weights with "
            "model.init_weights=model.pt (launchers: --weights), unfreeze them (optim.frozen), or set "
            "model.random_frozen_weights=true for a throughput-only run (launchers: --random-weights)"
        )

    def checkpoint_path(self, name: str = checkpoint.LATEST) -> Path:
        return self.run_dir / CKPT_DIR / name

    def save(self, names: tuple[str, ...] = (checkpoint.LATEST,)) -> None:
        """Rank 0 writes the checkpoint. The sampler and the LR schedule are pure functions of (config, epoch,
        step), so they have no entry: a resumed run recomputes both from the epoch and step saved here."""
        if not self.dist.is_main:
            return
        state = {
            "model": {**self.model.state_dict(), **self.frozen_originals},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "global_step": self.global_step,
            "rng": checkpoint.rng_state(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }
        for name in names:
            checkpoint.save_atomic(state, self.checkpoint_path(name))

    def resume(self) -> bool:
        """Continue from checkpoint.resume ("auto": this run's latest checkpoint, if any); True if it did."""
        target = self.cfg.checkpoint.resume
        if not target:
            return False
        path = self.checkpoint_path() if target == "auto" else Path(target)
        if target == "auto" and not path.is_file():
            return False
        state = checkpoint.load(path)
        check_resume_state(state, path)
        try:
            load_weights(self.model, state["model"], strict=True, source=str(path))
        except WeightsMismatchError as err:
            raise ValueError(f"cannot resume from {path}: it was written for another model\n{err}") from err
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.global_step = state["epoch"], state["step"], state["global_step"]
        checkpoint.set_rng_state(state["rng"])
        LOGGER.info(f"resumed from {path} at epoch {self.epoch}, step {self.step}")
        return True

    def check_same_start_on_every_rank(self) -> None:
        """Every rank (of every node) must start from rank 0's epoch and step; a node that cannot read the
        checkpoint rank 0 resumed from would otherwise train out of step."""
        position = [self.epoch, self.step, self.global_step]
        main = distributed.broadcast_from_main(position, self.device)
        if main != position:
            raise ValueError(
                f"{rank_label(self.dist.rank)} starts at epoch {self.epoch}, step {self.step} but rank 0 at epoch "
                f"{main[0]}, step {main[1]}: the nodes do not see the same checkpoint ({self.checkpoint_path()} "
                "here). Put the run directory (hydra.run.dir) on a filesystem every node shares, or pass "
                "checkpoint.resume=PATH to a copy every node can read"
            )

    # training -------------------------------------------------------------------------------------
    def progress(self) -> float:
        """Fraction of training done, for the LR schedule."""
        return (self.epoch + self.step / self.cfg.limit_train_batches) / self.cfg.max_epochs

    def loader(self, dataset, split_cfg: DictConfig, epoch: int, start_step: int, num_batches: int) -> DataLoader:
        sampler = DynamicBatchSampler(
            len(dataset),
            img_nums=tuple(split_cfg.img_nums),
            aspects=tuple(split_cfg.aspects),
            max_img_per_gpu=split_cfg.max_img_per_gpu,
            batch_size=split_cfg.get("batch_size"),
            seed=self.cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            batches_per_epoch=num_batches,
        )
        sampler.set_epoch(epoch, start_step)
        workers = self.cfg.data.num_workers
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type != "cpu",
            prefetch_factor=2 if workers > 0 else None,
        )

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        moved = {
            k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
        }
        if self.repeat_batch:  # before normalising: each reversal is expressed in its own new frame 0
            moved = with_reversed_frames(moved)
        with torch.no_grad():
            extrinsics, cam_points, world_points, depths = normalize_camera_extrinsics_and_points_batch(
                moved["extrinsics"],
                cam_points=moved["cam_points"],
                world_points=moved["world_points"],
                depths=moved["depths"],
                point_masks=moved["point_masks"],
            )
        moved.update(extrinsics=extrinsics, cam_points=cam_points, world_points=world_points, depths=depths)
        return moved

    def forward_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        model = self.ddp or self.model
        query_points = batch["tracks"][:, 0] if self.track_loss else None
        with runtime.autocast(self.device, self.amp_dtype):
            predictions = model(batch["images"], query_points=query_points, second_half_reversed=self.repeat_batch)
        return self.loss(predictions, batch)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One optimizer step over `batch` (split into accum_steps chunks); returns device scalars to log."""
        size = batch["images"].shape[0]
        sequences = size // 2 if self.repeat_batch else size  # accum_steps chunks the sampled sequences
        chunks = split_batch(batch, min(self.cfg.accum_steps, sequences), paired_halves=self.repeat_batch)
        self.optimizer.zero_grad(set_to_none=False)
        totals: dict[str, torch.Tensor] = {}
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            sync = contextlib.nullcontext() if last or self.ddp is None else self.ddp.no_sync()
            weight = chunk["images"].shape[0] / size  # chunk means weighted into the batch mean
            with sync:
                losses = self.forward_loss(chunk)
                self.scaler.scale(losses["objective"] * weight).backward()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0) + value.detach().float() * weight

        lr = lr_at(self.progress(), self.cfg.optim.lr, self.cfg.optim.min_lr, self.cfg.optim.warmup_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.unscale_(self.optimizer)
        norms = self.clipper.clip()
        found_inf = ~torch.isfinite(torch.stack(list(norms.values()))).all()
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            step_unless_nonfinite(self.optimizer, found_inf)
        logged = {("loss_objective" if k == "objective" else k): v for k, v in totals.items()}
        logged.update({f"Grad/{name}": norm.detach() for name, norm in norms.items()})
        logged["skipped_steps"] = found_inf.float()
        return logged

    def set_train_mode(self) -> None:
        self.model.train()
        keep_frozen_in_eval(self.model, self.frozen)

    def train_epoch(self) -> None:
        cfg = self.cfg
        num_steps = cfg.limit_train_batches
        loader = self.loader(self.train_set, cfg.data.train, self.epoch, self.step, num_steps)
        self.set_train_mode()
        meters, batch_time, data_time = DeviceMeters(), HostMeter(), HostMeter()
        runtime.reset_peak_memory(self.device)
        window_start = tick = time.perf_counter()
        window_steps = 0
        for batch in loader:
            data_time.add(time.perf_counter() - tick)
            meters.update(self.train_step(self.to_device(batch)))
            self.step += 1
            self.global_step += 1
            window_steps += 1
            last = self.step == num_steps
            if self.step % cfg.log_freq == 0 or last:
                runtime.synchronize(self.device)  # the window's time then covers the queued device work too
                batch_time.add(time.perf_counter() - window_start, count=window_steps)
                self.log("Train", meters, batch_time, data_time, self.step, num_steps)
                window_start, window_steps = time.perf_counter(), 0
            if cfg.checkpoint.save_every_steps and self.step % cfg.checkpoint.save_every_steps == 0 and not last:
                self.save()
            tick = time.perf_counter()
        self.epoch, self.step = self.epoch + 1, 0
        names = (checkpoint.LATEST,)
        if cfg.checkpoint.save_freq and self.epoch % cfg.checkpoint.save_freq == 0:
            names += (f"checkpoint_{self.epoch}.pt",)
        self.save(names)

    def log(
        self,
        phase: str,
        meters: DeviceMeters,
        batch_time: HostMeter,
        data_time: HostMeter,
        step: int,
        num_steps: int,
    ) -> None:
        window, epoch_means = meters.read()
        peak = runtime.peak_memory_bytes(self.device)
        mem_gb = peak / 1e9 if peak is not None else process_memory_gb()
        grads = {k: v for k, v in window.items() if k.startswith("Grad/")}
        skipped = epoch_means.pop("skipped_steps", 0.0) * meters.epoch_steps
        window.pop("skipped_steps", None)
        losses = {k: v for k, v in window.items() if not k.startswith("Grad/")}
        line = format_line(
            phase,
            self.epoch,
            step,
            num_steps,
            batch_time.read(),
            data_time.read(),
            mem_gb,
            (losses, {k: epoch_means[k] for k in losses}),
            {**grads, **({"Skipped steps": skipped} if skipped else {})},
        )
        LOGGER.info(line)
        scalars = {f"Loss/{phase.lower()}_{k}": v for k, v in losses.items()}
        scalars.update(grads)
        scalars["Optim/lr"] = self.optimizer.param_groups[0]["lr"]
        self.tensorboard.scalars(scalars, self.global_step)

    @torch.no_grad()
    def validate(self) -> None:
        cfg = self.cfg
        num_steps = cfg.limit_val_batches
        loader = self.loader(self.val_set, cfg.data.val, self.epoch, 0, num_steps)
        self.model.eval()
        meters, batch_time, data_time = DeviceMeters(), HostMeter(), HostMeter()
        tick = time.perf_counter()
        start = tick = time.perf_counter()
        for batch in loader:
            data_time.add(time.perf_counter() - tick)
            losses = self.forward_loss(self.to_device(batch))
            meters.update({("loss_objective" if k == "objective" else k): v for k, v in losses.items()})
            tick = time.perf_counter()
        runtime.synchronize(self.device)
        batch_time.add(time.perf_counter() - start, count=max(meters.epoch_steps, 1))
        self.log("Val", meters, batch_time, data_time, meters.epoch_steps, num_steps)

    def validates_after(self, epoch: int) -> bool:
        """Upstream's schedule: after epoch e (0-based) when e % val_epoch_freq == 0 and e < max_epochs - 1."""
        return self.val_set is not None and epoch % self.cfg.val_epoch_freq == 0 and epoch < self.cfg.max_epochs - 1

    def run(self) -> None:
        """Train to max_epochs, validating on upstream's schedule and once at the end.

        No collective in a `finally`: a rank that fails leaves at once (the launcher posts its error).
        """
        try:
            while self.epoch < self.cfg.max_epochs:
                finished = self.epoch
                self.train_epoch()
                if self.validates_after(finished):
                    self.validate()
            if self.val_set is not None:
                self.validate()
        finally:
            self.tensorboard.close()
