"""Fine-tuning for video classification: ``python -m timeclr.finetune CONFIG checkpoint=PATH|random [key=value ...]``.

The downstream test of a self-supervised video encoder that the literature reports (UCF101,
HMDB51): the pretrained backbone plus a linear classifier, all trained with labels, then scored
with multi-view testing. ``checkpoint=PATH`` takes the encoder of a TimeCLR pretraining
checkpoint (``timeclr.evaluate.load_encoder``: the config's ``model`` must match the checkpoint's,
else the error names both) and drops its projection head, which only served the contrastive
loss; ``checkpoint=random`` starts from the same network untrained, the baseline.

Training: one labelled view of each video (``data.views[finetune.view]``, train mode: random
temporal position, random resized crop and flip as configured), cross-entropy with optional label
smoothing, dropout before the classifier, ``train``'s optimizer and schedule with the learning
rate scaled per parameter group (classifier 1, backbone ``finetune.backbone_lr``, and with
``finetune.layer_decay`` < 1 a further decay towards the input), bf16 autocast on CUDA. The run
mechanics are ``timeclr.train``'s, through its functions: run directory with the resolved config,
``metrics.jsonl``, progress bar, atomic checkpoints every ``train.ckpt_every`` steps, and rerunning
the same command resumes and reproduces the uninterrupted run's losses (the dropout masks are
drawn from (seed, step), not from a generator whose state a restart would lose).

Testing (``eval.test_manifest``): every test video is seen as C x S views, C = ``test_clips``
clips spread uniformly over it (``frame_selection``: clip k of C) times S = ``test_crops`` square
crops along its long side after the short-side resize (left/centre/right for S = 3), all from one
decode per video; the classifier's softmax is averaged over the views. ``finetune.json`` gets
top-1 and top-5 (percent), the mean per-class accuracy, each class's accuracy, the mean top-1 of a
single view (what the averaging adds) and the protocol; ``confusion.png`` the confusion matrix.
"""
import argparse
import copy
import gc
import json
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from timeclr.config import ConfigError, ViewConfig, load_config
from timeclr.evaluate import load_encoder
from timeclr.pipelines.datasets import require_manifest
from timeclr.pipelines.manifest import read_manifest
from timeclr.pipelines.video import VideoLoader, read_videos
from timeclr.train import (CHECKPOINT, NonFiniteLoss, backward_and_step, build_optimizer, lr_at, plot_loss,
                           prepare_synthetic, resume, save_checkpoint, setup_distributed, stop_if_not_finite)

RESULTS = "finetune.json"


# ---------------------------------------------------------------------------------------------
# the classifier and its per-layer learning rates
# ---------------------------------------------------------------------------------------------


class VideoClassifier(nn.Module):
    """Backbone -> dropout -> linear classifier: (B, C, T, H, W) clips -> (B, num_classes) logits.

    The classifier starts at small random weights (std 0.01) and zero bias, so the first steps'
    gradients reaching the pretrained backbone are small rather than those of a random projection.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(x)))


def backbone_stages(backbone: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's parameters in stages, input side first, for layer-wise learning rates: a
    video ResNet's stem, layer1 .. layer4; the small CNN's conv stages (each conv with the norm
    after it). Every parameter is in exactly one stage."""
    names = ("stem", "layer1", "layer2", "layer3", "layer4")
    if all(hasattr(backbone, n) for n in names):
        stages = [list(getattr(backbone, n).parameters()) for n in names]
    else:  # a Sequential of conv, norm, ReLU, ...: a conv starts a stage
        stages = []
        for module in backbone.features:
            if isinstance(module, nn.Conv3d) or not stages:
                stages.append([])
            stages[-1] += list(module.parameters())
    missed = {id(p) for p in backbone.parameters()} - {id(p) for s in stages for p in s}
    if missed:
        raise ValueError(f"{type(backbone).__name__}: {len(missed)} parameters belong to no stage")
    return stages


def param_groups(model: VideoClassifier, ft) -> list[dict]:
    """Optimizer parameter groups, each with its ``lr_scale`` (the step's lr is lr_at(...) x scale):
    the classifier 1, backbone stage i of S ``ft.backbone_lr * ft.layer_decay ** (S - i)``."""
    stages = backbone_stages(model.backbone)
    groups = [{"params": params, "lr_scale": ft.backbone_lr * ft.layer_decay ** (len(stages) - i)}
              for i, params in enumerate(stages)]
    return groups + [{"params": list(model.fc.parameters()), "lr_scale": 1.0}]


def build_classifier(cfg, num_classes: int, device) -> VideoClassifier:
    """The encoder of ``cfg.checkpoint`` ('random': untrained) without its projection head, plus a
    classifier initialised from ``train.seed``."""
    try:
        encoder = load_encoder(cfg, device)
    except RuntimeError as e:  # load_state_dict: keys or shapes that no TimeCLR pretraining model has
        raise ConfigError(f"checkpoint: {cfg.checkpoint} does not hold a TimeCLR pretraining model of "
                          f"{OmegaConf.to_container(cfg.model)}: {str(e).splitlines()[0]}") from None
    torch.manual_seed(cfg.train.seed)
    return VideoClassifier(encoder.backbone, encoder.feature_dim, num_classes, cfg.finetune.dropout).to(device)


# ---------------------------------------------------------------------------------------------
# data configs: one training view; C x S test views
# ---------------------------------------------------------------------------------------------


def train_data_config(cfg):
    """The training pipeline's data config: the one view ``finetune.view``, train mode."""
    data = copy.deepcopy(cfg.data)
    data.views = [cfg.data.views[cfg.finetune.view]]
    return data


def multiview_data_config(cfg):
    """The test pipeline's data config: clip k of C x crop s of S of the fine-tuning view, in
    eval mode (deterministic, no augmentation), view index k·S + s."""
    ft = cfg.finetune
    data = copy.deepcopy(cfg.data)
    view = OmegaConf.to_container(cfg.data.views[ft.view])
    data.views = [ViewConfig(**{**view, "clip": k, "clips": ft.test_clips, "crop": s, "crops": ft.test_crops})
                  for k in range(ft.test_clips) for s in range(ft.test_crops)]
    data.train, data.augment, data.drop_last = False, False, False
    data.batch_size = cfg.eval.batch_size
    return data


# ---------------------------------------------------------------------------------------------
# multi-view scores
# ---------------------------------------------------------------------------------------------


def average_views(logits: torch.Tensor) -> torch.Tensor:
    """(V, N, K) logits of V views of N videos -> (N, K) class probabilities: the softmax of each
    view, averaged over the views (averaging probabilities, not logits, keeps one overconfident
    view from outvoting the others)."""
    return logits.float().softmax(-1).mean(0)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Percent of rows of ``scores`` (N, K) whose label is among their ``k`` highest (k capped at K)."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return 100.0 * (top == labels[:, None]).any(1).double().mean().item()


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts: row = true class, column = predicted class."""
    return torch.bincount(labels * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def summarise(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """The results of V views' logits (V, N, K) against ``labels`` (N,): percentages."""
    probs = average_views(logits)
    pred = probs.argmax(1)
    cm = confusion_matrix(pred, labels, len(classes))
    counts = cm.sum(1)
    per_class = {name: (100.0 * cm[c, c].item() / counts[c].item() if counts[c] else None)
                 for c, name in enumerate(classes)}
    present = [v for v in per_class.values() if v is not None]
    single = [topk_accuracy(view, labels, 1) for view in logits.float()]
    return {"top1": topk_accuracy(probs, labels, 1), "top5": topk_accuracy(probs, labels, 5),
            "mean_class_accuracy": sum(present) / len(present), "single_view_top1": sum(single) / len(single),
            "per_class": per_class, "confusion": cm.tolist()}


def plot_confusion(cm, classes: list[str], path: str, title: str):
    """The confusion matrix, each row normalised by the class's test videos (so the diagonal is
    the per-class accuracy); class names on the axes while they stay legible (<= 40 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    size = min(14.0, max(4.5, 0.28 * k + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the class's videos")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def view_logits(model, data, manifest, device, bf16=True):
    """(V, N, K) logits of every view of every video of ``manifest`` (manifest order) and (N,) labels.
    Under DDP each rank scores its shard and the shards are gathered on every rank."""
    loader = VideoLoader(data, read_videos(manifest))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and bf16)
    logits, labels, order = [], [], []
    model.eval()
    for batch in loader:
        with autocast:
            logits.append(torch.stack([model(v.to(device)) for v in batch["views"]]).float().cpu())
        labels.append(batch["label"].cpu())
        order.append(batch["index"].cpu())
    part = (torch.cat(logits, 1), torch.cat(labels), torch.cat(order))
    if dist.is_initialized():
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, part)
        part = tuple(torch.cat(p, dim) for p, dim in zip(zip(*parts), (1, 0, 0)))
    logits, labels, order = part
    return logits[:, order.argsort()], labels[order.argsort()]


def multiview_test(cfg, model, device, classes) -> dict:
    """Multi-view testing on ``eval.test_manifest``: the results dict written to finetune.json."""
    ft, data = cfg.finetune, multiview_data_config(cfg)
    view = data.views[0]
    t0 = time.perf_counter()
    logits, labels = view_logits(model, data, cfg.eval.test_manifest, device, cfg.train.bf16)
    results = summarise(logits, labels, classes)
    results["protocol"] = {
        "clips": ft.test_clips, "crops": ft.test_crops, "views_per_video": ft.test_clips * ft.test_crops,
        "aggregation": "mean of the views' softmax",
        "view": {"kind": view.kind, "frames": view.frames, "crop_size": view.crop_size,
                 **({"stride": view.strides[0]} if view.kind == "interval" else {})},
        "short_side": data.short_side, "test_manifest": str(cfg.eval.test_manifest),
        "videos": labels.numel(), "classes": len(classes)}
    results["checkpoint"] = str(cfg.checkpoint)
    results["test_seconds"] = round(time.perf_counter() - t0, 1)
    return results


def write_results(cfg, results: dict):
    """finetune.json (written atomically) and confusion.png in ``out_dir``; prints the summary."""
    path = os.path.join(cfg.out_dir, RESULTS)
    with open(f"{path}.tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(f"{path}.tmp", path)
    p = results["protocol"]
    title = (f"{os.path.basename(str(cfg.checkpoint))} fine-tuned, {p['clips']} clips x {p['crops']} crops: "
             f"top-1 {results['top1']:.1f}%, top-5 {results['top5']:.1f}%")
    plot_confusion(results["confusion"], list(results["per_class"]), os.path.join(cfg.out_dir, "confusion.png"),
                   title)
    print(f"test ({p['videos']} videos, {p['classes']} classes, {p['clips']} clips x {p['crops']} crops): "
          f"top-1 {results['top1']:.1f}  top-5 {results['top5']:.1f}  mean class {results['mean_class_accuracy']:.1f}  "
          f"(one view: top-1 {results['single_view_top1']:.1f})")


# ---------------------------------------------------------------------------------------------
# checks before anything runs
# ---------------------------------------------------------------------------------------------


def check_config(cfg):
    """Errors that name the key, before any data or model is touched."""
    ft = cfg.finetune
    if not cfg.checkpoint:
        raise ConfigError("say which encoder to fine-tune: checkpoint=PATH (a TimeCLR pretraining checkpoint) "
                          "or checkpoint=random")
    if not 0 <= ft.view < len(cfg.data.views):
        raise ConfigError(f"finetune.view={ft.view}, but data.views has {len(cfg.data.views)} views")
    for key, ok, want in (("test_clips", ft.test_clips >= 1, ">= 1"), ("test_crops", ft.test_crops >= 1, ">= 1"),
                          ("dropout", 0 <= ft.dropout < 1, "in [0, 1)"),
                          ("label_smoothing", 0 <= ft.label_smoothing < 1, "in [0, 1)"),
                          ("backbone_lr", ft.backbone_lr >= 0, ">= 0"), ("layer_decay", ft.layer_decay > 0, "> 0"),
                          ("num_classes", ft.num_classes >= 0, ">= 0 (0: from the manifest's class list)")):
        if not ok:
            raise ConfigError(f"finetune.{key} must be {want}, got {ft[key]}")
    view = cfg.data.views[ft.view]
    if ft.test_crops > 1 and view.crop_size > cfg.data.short_side:
        raise ConfigError(f"finetune.test_crops={ft.test_crops} takes crops along the long side after the short "
                          f"side is resized to data.short_side={cfg.data.short_side}: data.views[{ft.view}].crop_size "
                          f"({view.crop_size}) must not exceed it")
    ckpt = os.path.join(cfg.out_dir, CHECKPOINT)
    if cfg.checkpoint != "random" and os.path.abspath(cfg.checkpoint) == os.path.abspath(ckpt):
        raise ConfigError(f"out_dir={cfg.out_dir} is the pretraining run itself (checkpoint={cfg.checkpoint}); "
                          "fine-tune into another out_dir")
    saved = os.path.join(cfg.out_dir, "config.yaml")
    if os.path.exists(ckpt) and os.path.exists(saved):  # resuming: it must be a run of the same encoder
        before = str(OmegaConf.load(saved).get("checkpoint") or "")
        if not before:  # runs of timeclr.train save checkpoint: ''
            raise ConfigError(f"out_dir={cfg.out_dir} holds a pretraining run, not a fine-tuning one: "
                              "fine-tune into another out_dir")
        if os.path.abspath(before) != os.path.abspath(cfg.checkpoint):  # 'random' compares as a path too
            raise ConfigError(f"out_dir={cfg.out_dir} holds a run fine-tuned from checkpoint={before}, not "
                              f"checkpoint={cfg.checkpoint}: choose another out_dir (or delete that one)")


def class_list(cfg) -> list[str]:
    """The class names (label order): the train manifest's list, which the test manifest must share."""
    _, classes = read_manifest(cfg.data.manifest)
    if cfg.eval.test_manifest and cfg.train.evaluate:
        _, test_classes = read_manifest(cfg.eval.test_manifest)
        if test_classes != classes:
            raise ConfigError(f"eval.test_manifest {cfg.eval.test_manifest} has {len(test_classes)} classes that "
                              f"differ from data.manifest {cfg.data.manifest}'s {len(classes)}: labels would not agree")
    if cfg.finetune.num_classes:
        if cfg.finetune.num_classes < len(classes):
            raise ConfigError(f"finetune.num_classes={cfg.finetune.num_classes}, but {cfg.data.manifest} lists "
                              f"{len(classes)} classes")
        classes = classes + [f"class {i}" for i in range(len(classes), cfg.finetune.num_classes)]
    return classes


# ---------------------------------------------------------------------------------------------
# the fine-tuning run
# ---------------------------------------------------------------------------------------------


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one step (its dropout masks): a function of (seed, step, rank) only."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def finetune(cfg) -> dict:
    """Fine-tune (or resume) according to ``cfg``, then test; returns the test results, if any."""
    check_config(cfg)
    if not cfg.synthetic.enabled:  # a dataset not set up yet is the likeliest first error: say how
        require_manifest(cfg.data.manifest, cfg.data)
        if cfg.train.evaluate and cfg.eval.test_manifest:
            require_manifest(cfg.eval.test_manifest, cfg.data, "eval.test_manifest")
    world, rank, device = setup_distributed(cfg)

    # -- data: one labelled view per video
    if cfg.synthetic.enabled:
        prepare_synthetic(cfg, rank)
    classes = class_list(cfg)
    loader = VideoLoader(train_data_config(cfg), read_videos(cfg.data.manifest))

    # -- model: the pretrained encoder, projection head dropped, plus a linear classifier
    #    (before the run directory: a checkpoint of another architecture leaves nothing behind)
    model = build_classifier(cfg, len(classes), device)
    if world > 1 and device.type == "cuda" and cfg.model.norm == "batch":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, cfg.train, param_groups(model, cfg.finetune))

    # -- run directory: the resolved config is saved beside the run
    os.makedirs(cfg.out_dir, exist_ok=True)
    ckpt_path = os.path.join(cfg.out_dir, CHECKPOINT)
    metrics_path = os.path.join(cfg.out_dir, "metrics.jsonl")
    if rank == 0:
        OmegaConf.save(cfg, os.path.join(cfg.out_dir, "config.yaml"), resolve=True)
    total_steps = cfg.train.epochs * len(loader)

    # -- resume: the same command continues from the last checkpoint
    try:
        step = resume(cfg, model, optimizer, loader, device, rank, total_steps)
    except (RuntimeError, ValueError) as e:  # state dicts of another model or optimizer
        raise ConfigError(f"{ckpt_path} is not a fine-tuning checkpoint of this model and config: "
                          f"{str(e).splitlines()[0]}; choose another out_dir") from None
    net = DDP(model) if world > 1 else model

    # -- loop
    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=rank != 0, dynamic_ncols=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and cfg.train.bf16)
    t_last, wait, busy = time.perf_counter(), 0.0, 0.0
    net.train()
    while step < total_steps:
        for batch in loader:
            t_data = time.perf_counter()
            wait += t_data - t_last
            lr = lr_at(step, total_steps, cfg.train)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            clips, labels = batch["views"][0].to(device, non_blocking=True), batch["label"].to(device)
            torch.manual_seed(step_seed(cfg.train.seed, step, rank))
            with autocast:
                logits = net(clips)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.finetune.label_smoothing)
            stop_if_not_finite(loss, step, lr, loader, batch)
            backward_and_step(net, optimizer, loss, cfg.train.grad_clip)
            step += 1
            t_last = time.perf_counter()
            busy += t_last - t_data

            if step % cfg.train.log_every == 0 or step == total_steps:
                clips_per_s = len(labels) * world * cfg.train.log_every / max(wait + busy, 1e-9)
                logged = torch.stack([loss.detach(), (logits.argmax(1) == labels).float().mean()])
                if world > 1:  # the global batch's mean (equal shards), as one process would log it
                    dist.all_reduce(logged)
                    logged /= world
                loss_value, accuracy = logged[0].item(), 100.0 * logged[1].item()
                row = {"step": step, "epoch": loader.epoch, "loss": loss_value, "train_top1": accuracy, "lr": lr,
                       "clips_per_s": clips_per_s, "data_wait": wait / max(wait + busy, 1e-9)}
                if rank == 0:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{accuracy:.0f}%", lr=f"{lr:.2e}",
                                clips_s=f"{clips_per_s:.1f}", wait=f"{row['data_wait']:.0%}")
                wait = busy = 0.0
            bar.update(1)
            if rank == 0 and (step % cfg.train.ckpt_every == 0 or step == total_steps):
                save_checkpoint(ckpt_path, model, optimizer, step, loader, cfg)
            if step >= total_steps:
                break
    bar.close()

    # -- outputs: loss curve, multi-view test (sharded over the ranks, written by rank 0)
    results = {}
    if rank == 0 and os.path.exists(metrics_path):
        plot_loss(metrics_path, os.path.join(cfg.out_dir, "loss.png"), ylabel="cross-entropy loss")
    if cfg.train.evaluate and not cfg.eval.test_manifest and rank == 0:
        print("eval.test_manifest is empty: no test")
    if cfg.train.evaluate and cfg.eval.test_manifest:
        results = multiview_test(cfg, model, device, classes)
        results["steps"] = total_steps
        if rank == 0:
            write_results(cfg, results)
    if dist.is_initialized():
        dist.barrier()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m timeclr.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="experiment YAML, e.g. pipelines/synthetic_finetune.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="checkpoint=PATH|random (required), config overrides, e.g. train.epochs=5")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        finetune(cfg)
    except (ConfigError, OSError, NonFiniteLoss) as e:
        raise SystemExit(f"timeclr.finetune: {e}") from None
    finally:
        if dist.is_initialized():
            gc.collect()  # see timeclr.train.main: free DDP's reducer while the group is alive
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
