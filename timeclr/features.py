"""Frozen-feature evaluation of an encoder: features of every video of a split from the eval
pipeline (deterministic frame selection, short-side resize, centre crop), scored by
``timeclr.metrics`` (linear probe, kNN, retrieval R@k). Shared by ``timeclr.evaluate`` and the end
of ``timeclr.train``.
"""
import copy
import os

import torch
from tqdm import tqdm

from timeclr.atomic import write_json
from timeclr.metrics import evaluate_features
from timeclr.pipelines.video import VideoLoader, read_videos
from timeclr.run import gather_in_order, random_model, to_device

KEYS = ["linear_top1", "knn_top1", "retrieval_r1", "retrieval_r5", "retrieval_r10", "retrieval_r20"]
LABELS = {"linear_top1": "linear top-1", "knn_top1": "kNN top-1", "retrieval_r1": "R@1", "retrieval_r5": "R@5",
          "retrieval_r10": "R@10", "retrieval_r20": "R@20"}
RESULTS = "eval.json"


def eval_data_config(cfg):
    """The data config of the eval pipeline: one view (``eval.view``), deterministic, no augmentation."""
    data = copy.deepcopy(cfg.data)
    data.views = [cfg.data.views[cfg.eval.view]]
    data.train, data.augment, data.drop_last = False, False, False
    data.batch_size = cfg.eval.batch_size
    return data


@torch.no_grad()
def extract_features(model, data, manifest, device, desc: str = "features"):
    """(N, F) encoder features and (N,) labels of every video of ``manifest``, in manifest order.
    Under DDP each rank extracts its shard and every rank gets them all (``run.gather_in_order``).
    Rank 0 shows a progress bar named ``desc``."""
    loader = VideoLoader(data, read_videos(manifest))
    feats, labels, order = [], [], []
    model.eval()
    rank0 = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not rank0, leave=False, dynamic_ncols=True):
        feats.append(model.features(to_device(batch["views"][0], device)).float().cpu())
        labels.append(batch["label"].cpu())
        order.append(batch["index"].cpu())
    out = gather_in_order({"feats": (torch.cat(feats), 0), "labels": (torch.cat(labels), 0)}, torch.cat(order))
    return out["feats"], out["labels"]


def evaluate_model(cfg, model, device, name: str = "encoder") -> dict:
    """The six metrics of ``model``'s frozen features (train split -> test split)."""
    data = eval_data_config(cfg)
    train_x, train_y = extract_features(model, data, cfg.eval.train_manifest or cfg.data.manifest, device,
                                        desc=f"{name}: train-split features")
    test_x, test_y = extract_features(model, data, cfg.eval.test_manifest, device, desc=f"{name}: test-split features")
    return evaluate_features(train_x, train_y, test_x, test_y, k=cfg.eval.knn_k)


def describe_split(cfg) -> str:
    """What the numbers are measured on: the test split's size, classes and chance level."""
    test = read_videos(cfg.eval.test_manifest)
    train = read_videos(cfg.eval.train_manifest or cfg.data.manifest)
    classes = len({v.label for v in test})
    return (f"test split {cfg.eval.test_manifest}: {len(test)} videos, {classes} classes (chance "
            f"{100 / max(classes, 1):.1f}%); probe and kNN fitted on {len(train)} train-split videos; kNN k={cfg.eval.knn_k}")


def print_table(results: dict, about: str = "", saved: str = ""):
    """``{encoder: {metric: percent}}`` as a table, one row per encoder, with what it was
    measured on (``about``) above it and where it was written (``saved``) below."""
    if about:
        print(about)
    print(f"{'encoder':<16}" + "".join(f"{LABELS[k]:>13}" for k in KEYS))
    for name, metrics in results.items():
        print(f"{name:<16}" + "".join(f"{metrics[k]:>13.1f}" for k in KEYS))
    if saved:
        print(f"(percent; written to {saved})")


def evaluate_run(cfg, model, device, rank: int = 0) -> dict:
    """End of training: the trained encoder and (``eval.random_init``) the same one untrained.
    Every rank calls it (each extracts its shard of the features); rank 0 writes
    ``out_dir/eval.json`` and prints the table."""
    results = {"pretrained": evaluate_model(cfg, model, device, "pretrained")}
    if cfg.eval.random_init:
        results["random_init"] = evaluate_model(cfg, random_model(cfg, device), device, "random init")
    if rank == 0:
        path = os.path.join(cfg.out_dir, RESULTS)
        write_json(path, results)
        print_table(results, describe_split(cfg), path)
    return results
