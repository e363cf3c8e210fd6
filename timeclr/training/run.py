"""The run library: what every training command shares, so each command is its own loop and
nothing else (``timeclr.train`` pretrains, ``timeclr.finetune`` fine-tunes, and
``benchmarks/train_throughput.py`` times the very same step).

    RunDir               the files of a run folder, each named once (checkpoint.pt, config.yaml, ...)
    start_run_dir        out_dir with the resolved config.yaml beside the run
    checkpoints          (timeclr.training.checkpoints) atomic checkpoints (model, optimizer, step, reader position, config),
                         read back before they replace the previous one, which is kept (checkpoint.prev.pt);
                         called as ``checkpoints.save_checkpoint(...)``, the one name tests patch
    resume               the step to go on from, with model, optimizer and reader restored
    MetricsLog           metrics.jsonl (+ TensorBoard events when tensorboard is installed)
    FiniteCheck          NaN/inf losses caught at log and checkpoint steps, naming step and videos
    train_step           one optimisation step: loss, backward, clipping, optimizer step
    Loop                 the bookkeeping around the steps: resume, batches until the last step,
                         clocks, progress bar, log rows, checks and checkpoints when due
    load_model         a pretraining checkpoint's model, checked against the config's
"""
import json
import math
import os
import time

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from timeclr.training import checkpoints
from timeclr.files.atomic import atomic_open
from timeclr.config import ModelConfig
from timeclr.errors import ConfigError, NonFiniteLoss
from timeclr.files.lock import FolderLock
from timeclr.models import build_model
from timeclr.training.optim import set_lr
from timeclr.files.recorded import differences

# ---------------------------------------------------------------------------------------------
# run directory and checkpoints: written atomically, so a kill -9 never leaves half a file
# ---------------------------------------------------------------------------------------------


class RunDir:
    """The files of a run folder (a run's ``out_dir``), each file name spelled here once:
    ``RunDir(cfg.out_dir).checkpoint`` is the path of its checkpoint, and so on.

        checkpoint           checkpoint.pt       the latest checkpoint (``timeclr.training.checkpoints``)
        previous_checkpoint  checkpoint.prev.pt  the one before it, kept while the next is written
        config               config.yaml         the run's resolved config
        metrics              metrics.jsonl       one JSON object per log step (``MetricsLog``)
        tensorboard          the folder itself   TensorBoard's event files (events.out.tfevents.*)
        loss_plot            loss.png            the loss curve (``timeclr.training.plots.plot_loss``)
        eval_results         eval.json           frozen-feature evaluation (``timeclr.evaluation.features``)
        finetune_results     finetune.json       the fine-tuned classifier's multi-view test
        confusion_plot       confusion.png       that test's confusion matrix

    The folder's lock (``.timeclr.lock``: one job per folder) is ``timeclr.files.lock.FolderLock``'s,
    which guards prepare and shard folders too.
    """

    def __init__(self, root):
        self.root = str(root)
        self.checkpoint = os.path.join(self.root, "checkpoint.pt")
        self.previous_checkpoint = checkpoints.previous_path(self.checkpoint)
        self.config = os.path.join(self.root, "config.yaml")
        self.metrics = os.path.join(self.root, "metrics.jsonl")
        self.tensorboard = self.root
        self.loss_plot = os.path.join(self.root, "loss.png")
        self.eval_results = os.path.join(self.root, "eval.json")
        self.finetune_results = os.path.join(self.root, "finetune.json")
        self.confusion_plot = os.path.join(self.root, "confusion.png")


def start_run_dir(cfg, rank: int) -> str:
    """Create ``cfg.out_dir`` and save the resolved config there (rank 0); returns the checkpoint path."""
    os.makedirs(cfg.out_dir, exist_ok=True)
    files = RunDir(cfg.out_dir)
    if rank == 0:
        with atomic_open(files.config) as f:
            f.write(OmegaConf.to_yaml(cfg, resolve=True))
    return files.checkpoint


def saved_model_config(ckpt) -> dict:
    """The ``model`` keys a checkpoint was written with ({} if it records none); keys added to
    ModelConfig since take their defaults, so an older checkpoint compares equal to today's config."""
    saved = (ckpt.get("config") or {}).get("model") or {}
    return {**OmegaConf.to_container(OmegaConf.structured(ModelConfig)), **saved} if saved else {}


def resume(cfg, model, optimizer, loader, device, rank, total_steps) -> int:
    """The step to go on from: the run directory's latest good checkpoint (``checkpoint.pt``, or
    ``checkpoint.prev.pt`` when that one is damaged) restores model, optimizer and the reader's
    position; 0 without one."""
    ckpt, _ = checkpoints.latest_good_checkpoint(RunDir(cfg.out_dir).checkpoint, map_location=device, warn=rank == 0)
    if ckpt is None:
        return 0
    # a folder left by another experiment (say runs/synthetic from before the main job moved to v2)
    # would otherwise go on from its weights, or stop at its step count and report them as this run's
    saved = {"model": saved_model_config(ckpt),
             "synthetic": {"set": ((ckpt.get("config") or {}).get("synthetic") or {}).get("set", "v1")}}
    keys = [f"model.{k}" for k in cfg.model] + ["synthetic.set"]
    diff = differences(saved, {"model": cfg.model, "synthetic": {"set": cfg.synthetic.set}}, keys) if saved["model"] else []
    if diff:
        raise ConfigError(f"{cfg.out_dir} holds a run of another experiment ({'; '.join(diff)}): delete it or "
                          "choose another out_dir")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    loader.load_state_dict(ckpt["loader"])
    if rank == 0:
        print(f"resuming {cfg.out_dir} at step {ckpt['step']}/{total_steps}")
    return ckpt["step"]


def random_model(cfg, device):
    """The config's model, untrained: the baseline every evaluation reports beside the trained one."""
    torch.manual_seed(cfg.train.seed + 1)
    return build_model(cfg.model).to(device)


def load_model(cfg, device):
    """The model of ``cfg.checkpoint`` ('random' = untrained), checked against the config's architecture.

    Raises:
        ConfigError: no such file, or a checkpoint of another model (the message names both).
    """
    if cfg.checkpoint == "random":
        return random_model(cfg, device)
    if not os.path.exists(cfg.checkpoint):
        raise ConfigError(f"checkpoint: {cfg.checkpoint} does not exist")
    ckpt = checkpoints.load_checkpoint(cfg.checkpoint, map_location=device)
    saved = saved_model_config(ckpt)
    wanted = OmegaConf.to_container(cfg.model)
    if saved and differences(saved, wanted):
        raise ConfigError(f"checkpoint {cfg.checkpoint} holds model {saved}, but the config asks for {wanted}")
    model = build_model(cfg.model).to(device)
    model.load_state_dict(ckpt["model"])
    return model


# ---------------------------------------------------------------------------------------------
# the metrics log
# ---------------------------------------------------------------------------------------------


def _summary_writer(out_dir: str, step: int):
    """A TensorBoard writer in ``out_dir`` when the optional ``tensorboard`` package is installed,
    else None. ``purge_step`` hides the events a killed run wrote after the checkpoint it resumes
    from: logged steps count completed steps, so the first one redone is ``step + 1``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pip install -e ".[tensorboard]" to get event files
        return None
    return SummaryWriter(RunDir(out_dir).tensorboard, purge_step=step + 1 if step > 0 else None)


class MetricsLog:
    """``metrics.jsonl`` of a run (one JSON object per log step) and, when ``tensorboard`` is
    installed, TensorBoard events beside it: every number of a row as a scalar named ``train/KEY``,
    evaluation results as ``eval/ENCODER/METRIC``. Only rank 0 writes.

    The log is made to match the checkpoint: removed for a fresh run (step 0), cut back to
    ``step`` for a resumed one, so a rerun after a kill logs every step once.
    """

    def __init__(self, out_dir: str, step: int = 0, enabled: bool = True):
        self.path = RunDir(out_dir).metrics
        self.step, self.enabled, self.tb = step, enabled, None
        if not enabled:
            return
        if step == 0 and os.path.exists(self.path):
            os.remove(self.path)  # a fresh run: no stale metrics from an older one
        elif step > 0 and os.path.exists(self.path):  # drop lines written after the checkpoint
            kept = [line for line in open(self.path) if json.loads(line)["step"] <= step]
            with atomic_open(self.path) as f:
                f.writelines(kept)
        self.tb = _summary_writer(out_dir, step)

    def log(self, row: dict):
        """Append ``row`` (it has a ``step``) to metrics.jsonl and its numbers to TensorBoard."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(f"train/{key}", value, row["step"])

    def log_eval(self, results: dict, step: int):
        """Evaluation results ``{encoder: {metric: value}}`` (or ``{metric: value}``) to TensorBoard."""
        if self.tb is None:
            return
        for name, value in results.items():
            if isinstance(value, dict):
                for metric, v in value.items():
                    if isinstance(v, (int, float)):
                        self.tb.add_scalar(f"eval/{name}/{metric}", v, step)
            elif isinstance(value, (int, float)):
                self.tb.add_scalar(f"eval/{name}", value, step)

    def close(self):
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------------------------
# the step and the non-finite check
# ---------------------------------------------------------------------------------------------


class FiniteCheck:
    """Catch a NaN or inf loss without a host sync every step.

    Each step's loss stays on the device with the batch's video indices (host tensors, free to
    keep); ``check()``, called at log and checkpoint steps, syncs once for all steps since the last
    check and raises ``NonFiniteLoss`` naming the first bad step and its batch's videos. Checking
    before every checkpoint means a checkpoint never holds weights a NaN has reached: the run stops
    and rerunning resumes from the last good one (with a lower ``train.lr``, say).
    """

    def __init__(self, videos):
        self.videos = videos
        self.pending = []  # (step, lr, loss on the device, manifest indices of the batch)

    def add(self, step: int, lr: float, loss: torch.Tensor, batch):
        self.pending.append((step, lr, loss.detach(), batch["index"]))

    def check(self):
        if not self.pending:
            return
        finite = torch.isfinite(torch.stack([p[2] for p in self.pending])).cpu()  # the one sync
        pending, self.pending = self.pending, []
        if bool(finite.all()):
            return
        step, lr, loss, index = pending[int((~finite).nonzero()[0])]
        # a shard stream keeps its recent samples' records only: a sample number when it has moved on
        keyed = isinstance(self.videos, dict)
        paths = [self.videos[i].path if not keyed or i in self.videos else f"sample {i}" for i in index.tolist()]
        raise NonFiniteLoss(f"non-finite loss {loss.item()} at step {step} (lr {lr:.3g}); "
                            f"the batch's videos: {paths}")


def train_step(net, optimizer, loss_fn, batch, lr: float, grad_clip: float):
    """One optimisation step of ``net`` on ``batch``: the learning rate of every group set to
    ``lr`` (times the group's ``lr_scale``), ``loss, out = loss_fn(net, batch)``, backward,
    gradient norm clipped to ``grad_clip`` (0: no clipping), optimizer step.

    Returns the detached loss and ``out`` (the embeddings or logits), still on the device: no
    host sync here, so the data pipeline and the GPU keep running ahead.
    """
    set_lr(optimizer, lr)
    loss, out = loss_fn(net, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizer.step()
    return loss.detach(), out


# ---------------------------------------------------------------------------------------------
# the loop's bookkeeping
# ---------------------------------------------------------------------------------------------


def due(step: int, every: int, total: int) -> bool:
    """Whether completed step ``step`` is one of every ``every`` steps, or the last."""
    return step % every == 0 or step == total


def _postfix(row: dict) -> dict:
    """The progress bar's short form of a log row."""
    formats = {"loss": ("loss", "{:.3f}"), "train_top1": ("acc", "{:.0f}%"), "lr": ("lr", "{:.2e}"),
               "clips_per_s": ("clips_s", "{:.1f}"), "data_wait": ("wait", "{:.0%}"),
               "val_knn_top1": ("val_knn", "{:.1f}%")}
    return {name: fmt.format(row[key]) for key, (name, fmt) in formats.items() if key in row}


class Loop:
    """Everything a training command does around its steps, so its loop reads as the algorithm::

        loop = run.Loop(cfg, model, optimizer, loader, device, rank, world)   # resumes if it can
        for batch in loop:                     # batches until train.epochs are done
            lr = lr_at(loop.step, loop.total, cfg.train)
            loss, out = run.train_step(net, optimizer, loss_fn, batch, lr, cfg.train.grad_clip)
            loop.end_step(loss, batch, lr, lambda: {"loss": loss.item(), "lr": lr})
        loop.close()

    ``end_step`` counts the step and keeps its loss for the non-finite check; at log steps it
    checks, and ``report`` adds step, epoch, clips/s and the fraction of time spent waiting for
    data to the values, writes the row and updates the progress bar; at checkpoint steps it
    checks and saves (rank 0). Host syncs happen only there, at log and checkpoint steps.
    """

    def __init__(self, cfg, model, optimizer, loader, device, rank: int, world: int):
        self.cfg, self.model, self.optimizer, self.loader = cfg, model, optimizer, loader
        self.rank, self.world = rank, world
        # one job per run directory: a second training into it refuses instead of overwriting
        self.lock = FolderLock(cfg.out_dir, "training").acquire() if rank == 0 else None
        self.files = RunDir(cfg.out_dir)
        self.ckpt_path = start_run_dir(cfg, rank)
        self.total = cfg.train.epochs * len(loader)
        try:
            self.step = resume(cfg, model, optimizer, loader, device, rank, self.total)
        except ConfigError:  # damaged or refused: its own message names the file
            raise
        except (RuntimeError, ValueError, KeyError) as e:  # state dicts of another model or optimizer
            raise ConfigError(f"{self.ckpt_path} is not a checkpoint of this model and config: "
                              f"{str(e).splitlines()[0]}; choose another out_dir") from None
        self.log = MetricsLog(cfg.out_dir, self.step, enabled=rank == 0)
        self.finite = FiniteCheck(loader.videos if loader.videos is not None else loader.source.videos)
        self.bar = tqdm(total=self.total, initial=self.step, disable=rank != 0, dynamic_ncols=True)
        self.wait = self.busy = 0.0
        self.t_last = self.t_batch = time.perf_counter()

    def __iter__(self):
        """The loader's batches, epoch after epoch, until the last step is done."""
        while self.step < self.total:
            for batch in self.loader:
                self.t_batch = time.perf_counter()
                self.wait += self.t_batch - self.t_last
                yield batch
                if self.step >= self.total:
                    return

    def end_step(self, loss: torch.Tensor, batch, lr: float, values):
        """Count the step just taken. At a log step check the losses since the last check and
        log ``values()`` (called only then: it may sync, as ``loss.item()`` does); at a
        checkpoint step check and save, after the log row, so a kill right after a checkpoint
        leaves the log and the checkpoint at the same step."""
        self.finite.add(self.step, lr, loss, batch)
        self.step += 1
        self.t_last = time.perf_counter()
        self.busy += self.t_last - self.t_batch
        self.bar.update(1)
        if due(self.step, self.cfg.train.log_every, self.total):
            self.finite.check()
            self.report(values())
        if due(self.step, self.cfg.train.ckpt_every, self.total):
            self.finite.check()  # a checkpoint never holds weights a NaN has reached
            if self.rank == 0:
                checkpoints.save_checkpoint(self.ckpt_path, self.model, self.optimizer, self.step, self.loader, self.cfg)

    def report(self, values: dict) -> dict:
        """Log ``values`` with step, epoch, clips/s and the data-wait fraction since the last report."""
        elapsed = max(self.wait + self.busy, 1e-9)
        clips = self.cfg.data.batch_size * self.world * self.cfg.train.log_every
        row = {"step": self.step, "epoch": self.loader.epoch, **values, "clips_per_s": clips / elapsed,
               "data_wait": self.wait / elapsed}
        self.log.log(row)
        self.bar.set_postfix(_postfix(row))
        self.wait = self.busy = 0.0
        return row

    def log_extra(self, values: dict):
        """Log ``values`` (e.g. the online kNN) as a row of their own at this step; the time they
        took counts neither as a step nor as waiting for data."""
        self.log.log({"step": self.step, "epoch": self.step // len(self.loader), **values})
        self.bar.set_postfix(_postfix(values))
        self.t_last = time.perf_counter()

    def close(self):
        self.bar.close()
        self.log.close()
        if self.lock is not None:
            self.lock.release()
