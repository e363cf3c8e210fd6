"""TimeCLR pretraining: ``python -m timeclr.train CONFIG [key=value ...]``.

One readable loop, in phases: config -> (synthetic data) -> run directory -> model, optimizer ->
resume -> train -> final checkpoint, plot, evaluation. Rerunning the same command resumes from
the run directory's last checkpoint. Multi-GPU / multi-node through torchrun (DDP; gloo on CPU,
nccl on GPU): each rank reads its shard and the loss takes negatives from every rank.
"""
import argparse
import gc
import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel as DDP

from timeclr import nt_xent
from timeclr.config import ConfigError, load_config
from timeclr.models import build_model
from timeclr.pipelines.datasets import require_manifest
from timeclr.pipelines.video import VideoLoader, read_videos

CHECKPOINT = "checkpoint.pt"


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf: the run stops, naming the step and the batch's videos."""


# ---------------------------------------------------------------------------------------------
# schedule and optimizer
# ---------------------------------------------------------------------------------------------


def lr_at(step: int, total: int, cfg) -> float:
    """Linear warm-up to cfg.lr over cfg.warmup_steps, then cosine decay to cfg.min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio (You et al. 2017), as SimCLR trains with.
    Biases and BN parameters (1-D) get neither weight decay nor the trust ratio."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    w_norm, d_norm = p.norm(), d.norm()
                    # no host sync: the trust ratio stays a tensor
                    trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm, 1.0)
                    d = d.mul(trust)
                buf = self.state[p].setdefault("momentum", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])


def build_optimizer(model, cfg, params=None):
    """``cfg.optimizer`` over ``model``'s parameters, or over ``params`` (param groups with their own
    lr, as fine-tuning's per-layer learning rates) when given."""
    params = model.parameters() if params is None else params
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return LARS(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------------------------------------
# checkpoints: written atomically, so a kill -9 never leaves a half file behind
# ---------------------------------------------------------------------------------------------


def save_checkpoint(path, model, optimizer, step, loader, cfg):
    tmp = f"{path}.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "loader": loader.state_dict(), "config": OmegaConf.to_container(cfg, resolve=True)}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, map_location="cpu"):
    return torch.load(path, map_location=map_location, weights_only=False)


# ---------------------------------------------------------------------------------------------
# run directory outputs
# ---------------------------------------------------------------------------------------------


def plot_loss(metrics_path, png_path, ylabel="NT-Xent loss"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in open(metrics_path)]
    if not rows:
        return
    steps, loss = [r["step"] for r in rows], [r["loss"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, lw=0.6, alpha=0.35, label="per step")
    w = max(1, len(loss) // 40)  # a moving average: per-step losses of small batches are noisy
    if w > 1:
        smooth = [sum(loss[max(0, i - w + 1):i + 1]) / len(loss[max(0, i - w + 1):i + 1]) for i in range(len(loss))]
        ax.plot(steps, smooth, lw=1.5, label=f"mean of {w} steps")
    ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def prepare_synthetic(cfg, rank):
    """Generate the embedded dataset once (rank 0), then point the config at its manifests."""
    from timeclr.synthetic import ensure_dataset

    s = cfg.synthetic
    args = dict(train_per_class=s.train_per_class, test_per_class=s.test_per_class, frames=s.frames, size=s.size)
    if rank == 0:
        train_csv, test_csv = ensure_dataset(cfg.data.root, **args)
    if dist.is_initialized():
        dist.barrier()
    if rank != 0:
        train_csv, test_csv = ensure_dataset(cfg.data.root, **args)  # present now: returns at once
    cfg.data.manifest = str(train_csv)
    cfg.eval.test_manifest = cfg.eval.test_manifest or str(test_csv)


# ---------------------------------------------------------------------------------------------
# run set-up and resume, shared with timeclr.finetune
# ---------------------------------------------------------------------------------------------


def setup_distributed(cfg):
    """(world size, rank, device): joins the process group under torchrun (which sets WORLD_SIZE /
    RANK / LOCAL_RANK) and makes every rank's batches full and equal, or the collectives hang."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if cfg.data.device == "gpu" and device.type != "cuda":
        raise ConfigError("data.device=gpu but torch sees no CUDA device; use data.device=cpu")
    if world > 1:
        cfg.data.drop_last = True
    return world, rank, device


def resume(cfg, model, optimizer, loader, device, rank, total_steps) -> int:
    """The step to go on from: the run directory's checkpoint restores model, optimizer and the
    reader's position (0 without one). ``metrics.jsonl`` is made to match: removed for a fresh run,
    cut back to the checkpoint's step for a resumed one."""
    ckpt_path = os.path.join(cfg.out_dir, CHECKPOINT)
    metrics_path = os.path.join(cfg.out_dir, "metrics.jsonl")
    step = 0
    if os.path.exists(ckpt_path):
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(ckpt["loader"])
        step = ckpt["step"]
        if rank == 0:
            print(f"resuming {cfg.out_dir} at step {step}/{total_steps}")
    if rank == 0 and step == 0 and os.path.exists(metrics_path):
        os.remove(metrics_path)  # a fresh run: no stale metrics from an older one
    if rank == 0 and step > 0:  # drop log lines written after the checkpoint we resume from
        kept = [line for line in open(metrics_path) if json.loads(line)["step"] <= step]
        open(metrics_path, "w").writelines(kept)
    return step


# ---------------------------------------------------------------------------------------------
# the training run
# ---------------------------------------------------------------------------------------------


def stop_if_not_finite(loss, step, lr, loader, batch):
    """Raise ``NonFiniteLoss`` naming the step and the batch's videos if ``loss`` is NaN or inf.
    The one deliberate host sync per step: a NaN must stop the run at the step it appears."""
    if not torch.isfinite(loss).item():
        paths = [loader.videos[i].path for i in batch["index"].tolist()]
        raise NonFiniteLoss(f"non-finite loss {loss.item()} at step {step} (lr {lr:.3g}); "
                            f"the batch's videos: {paths}")


def backward_and_step(net, optimizer, loss, grad_clip: float):
    """Backward, clip the gradient norm to ``grad_clip`` (0: no clipping), optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizer.step()


def train(cfg) -> dict:
    """Pretrain (or resume) according to ``cfg``; returns the evaluation results, if any."""
    if not cfg.synthetic.enabled:  # a dataset not set up yet is the likeliest first error: say how
        require_manifest(cfg.data.manifest, cfg.data)
    # -- distributed set-up: torchrun sets WORLD_SIZE / RANK / LOCAL_RANK
    world, rank, device = setup_distributed(cfg)

    # -- data
    if cfg.synthetic.enabled:
        prepare_synthetic(cfg, rank)
    loader = VideoLoader(cfg.data, read_videos(cfg.data.manifest))

    # -- run directory: the resolved config is saved beside the run
    os.makedirs(cfg.out_dir, exist_ok=True)
    ckpt_path = os.path.join(cfg.out_dir, CHECKPOINT)
    metrics_path = os.path.join(cfg.out_dir, "metrics.jsonl")
    if rank == 0:
        OmegaConf.save(cfg, os.path.join(cfg.out_dir, "config.yaml"), resolve=True)

    # -- model and optimizer
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    if world > 1 and device.type == "cuda" and cfg.model.norm == "batch":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN statistics of the global batch
    model = model.to(device)
    optimizer = build_optimizer(model, cfg.train)
    total_steps = cfg.train.epochs * len(loader)

    # -- resume: the same command continues from the last checkpoint
    step = resume(cfg, model, optimizer, loader, device, rank, total_steps)
    net = DDP(model) if world > 1 else model

    # -- loop
    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=rank != 0, dynamic_ncols=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and cfg.train.bf16)
    t_last, wait, busy = time.perf_counter(), 0.0, 0.0
    while step < total_steps:
        for batch in loader:
            t_data = time.perf_counter()
            wait += t_data - t_last
            lr = lr_at(step, total_steps, cfg.train)
            for group in optimizer.param_groups:
                group["lr"] = lr
            views = [v.to(device, non_blocking=True) for v in batch["views"]]
            with autocast:
                z = torch.stack([net(v) for v in views])  # (V, B, proj_dim)
            loss = nt_xent(z.float(), temperature=cfg.train.temperature, backend=cfg.train.loss_backend,
                           gather_distributed=world > 1)
            stop_if_not_finite(loss, step, lr, loader, batch)
            backward_and_step(net, optimizer, loss, cfg.train.grad_clip)
            step += 1
            t_last = time.perf_counter()
            busy += t_last - t_data

            if step % cfg.train.log_every == 0 or step == total_steps:
                clips_per_s = len(batch["label"]) * world * cfg.train.log_every / max(wait + busy, 1e-9)
                row = {"step": step, "epoch": loader.epoch, "loss": loss.item(), "lr": lr,
                       "clips_per_s": clips_per_s, "data_wait": wait / max(wait + busy, 1e-9)}
                if rank == 0:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
                bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{lr:.2e}", clips_s=f"{clips_per_s:.1f}",
                                wait=f"{row['data_wait']:.0%}")
                wait = busy = 0.0
            bar.update(1)
            if rank == 0 and (step % cfg.train.ckpt_every == 0 or step == total_steps):
                save_checkpoint(ckpt_path, model, optimizer, step, loader, cfg)
            if step >= total_steps:
                break
    bar.close()

    # -- outputs: loss curve, evaluation of the encoder against the same encoder untrained
    results = {}
    if rank == 0:
        plot_loss(metrics_path, os.path.join(cfg.out_dir, "loss.png"))
        if cfg.train.evaluate and cfg.eval.test_manifest:
            from timeclr.evaluate import evaluate_run

            results = evaluate_run(cfg, model, device)
    if dist.is_initialized():
        dist.barrier()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m timeclr.train", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="experiment YAML, e.g. pipelines/synthetic.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=5")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, OSError) as e:
        raise SystemExit(f"timeclr.train: {e}") from None
    try:
        train(cfg)
    except (ConfigError, NonFiniteLoss) as e:  # the last checkpoint stays: lower train.lr and rerun to resume
        raise SystemExit(f"timeclr.train: {e}") from None
    finally:
        if dist.is_initialized():
            # Free the DDP wrapper (kept alive by a traceback, say) while the group is still
            # referenced: a Reducer dropping the last reference deadlocks in torch's gloo teardown.
            gc.collect()
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
