"""Fine-tuning's library: the data configs (one training view; C x S test views), the
multi-view test, the config checks, the labelled videos and their class list (each manifest read
once), the per-step dropout seed and the logged values. ``timeclr.finetune`` (the command) runs its loop over these and ``timeclr.training.run``.
"""
import copy
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from timeclr.training import distributed, run
from timeclr.files.atomic import write_json
from timeclr.config import ViewConfig
from timeclr.errors import ConfigError
from timeclr.evaluation.metrics import summarise
from timeclr.pipelines.loader.clip_source import read_videos_and_classes
from timeclr.pipelines.loader.video import VideoLoader
from timeclr.training.plots import plot_confusion


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


@torch.no_grad()
def view_logits(model, data, videos, device, bf16=True):
    """(V, N, K) logits of every view of every one of ``videos`` (in their order) and (N,) labels.
    Under DDP each rank scores its shard and the shards are gathered on every rank."""
    loader = VideoLoader(data, videos)
    autocast = distributed.autocast(device, bf16)
    logits, labels, order = [], [], []
    model.eval()
    for batch in loader:
        with autocast:
            logits.append(torch.stack([model(distributed.to_device(v, device)) for v in batch["views"]]).float().cpu())
        labels.append(batch["label"].cpu())
        order.append(batch["index"].cpu())
    out = distributed.gather_in_order({"logits": (torch.cat(logits, 1), 1), "labels": (torch.cat(labels), 0)},
                              torch.cat(order))
    return out["logits"], out["labels"]


def multiview_test(cfg, model, device, classes, videos) -> dict:
    """Multi-view testing on ``videos`` (``eval.test_manifest``'s, from ``labelled_videos``): the
    results dict written to finetune.json."""
    ft, data = cfg.finetune, multiview_data_config(cfg)
    view = data.views[0]
    t0 = time.perf_counter()
    logits, labels = view_logits(model, data, videos, device, cfg.train.bf16)
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
    files = run.RunDir(cfg.out_dir)
    write_json(files.finetune_results, results)
    p = results["protocol"]
    title = (f"{os.path.basename(str(cfg.checkpoint))} fine-tuned, {p['clips']} clips x {p['crops']} crops: "
             f"top-1 {results['top1']:.1f}%, top-5 {results['top5']:.1f}%")
    plot_confusion(results["confusion"], list(results["per_class"]), files.confusion_plot, title)
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
    files = run.RunDir(cfg.out_dir)
    ckpt = files.checkpoint
    if cfg.checkpoint != "random" and os.path.abspath(cfg.checkpoint) == os.path.abspath(ckpt):
        raise ConfigError(f"out_dir={cfg.out_dir} is the pretraining run itself (checkpoint={cfg.checkpoint}); "
                          "fine-tune into another out_dir")
    saved = files.config
    if os.path.exists(ckpt) and os.path.exists(saved):  # resuming: it must be a run of the same encoder
        before = str(OmegaConf.load(saved).get("checkpoint") or "")
        if not before:  # runs of timeclr.train save checkpoint: ''
            raise ConfigError(f"out_dir={cfg.out_dir} holds a pretraining run, not a fine-tuning one: "
                              "fine-tune into another out_dir")
        if os.path.abspath(before) != os.path.abspath(cfg.checkpoint):  # 'random' compares as a path too
            raise ConfigError(f"out_dir={cfg.out_dir} holds a run fine-tuned from checkpoint={before}, not "
                              f"checkpoint={cfg.checkpoint}: choose another out_dir (or delete that one)")


def labelled_videos(cfg) -> tuple[list, list | None, list[str]]:
    """(train videos, test videos, class names in label order), each manifest read once: the test
    manifest only when the run tests (``train.evaluate`` and ``eval.test_manifest``; else None),
    and its class list must be the train manifest's. ``finetune.num_classes`` pads the names."""
    train, classes = read_videos_and_classes(cfg.data.manifest)
    test = None
    if cfg.eval.test_manifest and cfg.train.evaluate:
        test, test_classes = read_videos_and_classes(cfg.eval.test_manifest)
        if test_classes != classes:
            raise ConfigError(f"eval.test_manifest {cfg.eval.test_manifest} has {len(test_classes)} classes that "
                              f"differ from data.manifest {cfg.data.manifest}'s {len(classes)}: labels would not agree")
    if cfg.finetune.num_classes:
        if cfg.finetune.num_classes < len(classes):
            raise ConfigError(f"finetune.num_classes={cfg.finetune.num_classes}, but {cfg.data.manifest} lists "
                              f"{len(classes)} classes")
        classes = classes + [f"class {i}" for i in range(len(classes), cfg.finetune.num_classes)]
    return train, test, classes


# ---------------------------------------------------------------------------------------------
# the fine-tuning run
# ---------------------------------------------------------------------------------------------


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one step (its dropout masks): a function of (seed, step, rank) only."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def logged_values(loss, logits, labels, lr: float, world: int) -> dict:
    """A log step's loss and training top-1: the global batch's means (equal shards), as one
    process would log them."""
    logged = torch.stack([loss, (logits.argmax(1) == labels).float().mean()])
    if world > 1:
        dist.all_reduce(logged)
        logged /= world
    return {"loss": logged[0].item(), "train_top1": 100.0 * logged[1].item(), "lr": lr}

