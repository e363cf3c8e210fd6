"""Frozen-feature evaluation of an encoder: features of every video of a split from the eval
pipeline (deterministic frame selection, short-side resize, centre crop), scored by
``timeclr.metrics`` (linear probe, kNN, retrieval R@k). Shared by ``timeclr.evaluate`` and the end
of ``timeclr.train``.
"""
import copy
import os

import torch

from timeclr.atomic import write_json
from timeclr.metrics import evaluate_features
from timeclr.pipelines.video import VideoLoader, read_videos
from timeclr.run import gather_in_order, random_model, to_device

KEYS = ["linear_top1", "knn_top1", "retrieval_r1", "retrieval_r5", "retrieval_r10", "retrieval_r20"]
RESULTS = "eval.json"


def eval_data_config(cfg):
    """The data config of the eval pipeline: one view (``eval.view``), deterministic, no augmentation."""
    data = copy.deepcopy(cfg.data)
    data.views = [cfg.data.views[cfg.eval.view]]
    data.train, data.augment, data.drop_last = False, False, False
    data.batch_size = cfg.eval.batch_size
    return data


@torch.no_grad()
def extract_features(model, data, manifest, device):
    """(N, F) encoder features and (N,) labels of every video of ``manifest``, in manifest order.
    Under DDP each rank extracts its shard and every rank gets them all (``run.gather_in_order``)."""
    loader = VideoLoader(data, read_videos(manifest))
    feats, labels, order = [], [], []
    model.eval()
    for batch in loader:
        feats.append(model.features(to_device(batch["views"][0], device)).float().cpu())
        labels.append(batch["label"].cpu())
        order.append(batch["index"].cpu())
    out = gather_in_order({"feats": (torch.cat(feats), 0), "labels": (torch.cat(labels), 0)}, torch.cat(order))
    return out["feats"], out["labels"]


def evaluate_model(cfg, model, device) -> dict:
    """The six metrics of ``model``'s frozen features (train split -> test split)."""
    data = eval_data_config(cfg)
    train_x, train_y = extract_features(model, data, cfg.eval.train_manifest or cfg.data.manifest, device)
    test_x, test_y = extract_features(model, data, cfg.eval.test_manifest, device)
    return evaluate_features(train_x, train_y, test_x, test_y, k=cfg.eval.knn_k)


def print_table(results: dict):
    """``{encoder: {metric: percent}}`` as a table, one row per encoder."""
    print(f"{'encoder':<14}" + "".join(f"{k:>15}" for k in KEYS))
    for name, metrics in results.items():
        print(f"{name:<14}" + "".join(f"{metrics[k]:>15.1f}" for k in KEYS))


def evaluate_run(cfg, model, device, rank: int = 0) -> dict:
    """End of training: the trained encoder and (``eval.random_init``) the same one untrained.
    Every rank calls it (each extracts its shard of the features); rank 0 writes
    ``out_dir/eval.json`` and prints the table."""
    results = {"pretrained": evaluate_model(cfg, model, device)}
    if cfg.eval.random_init:
        results["random_init"] = evaluate_model(cfg, random_model(cfg, device), device)
    if rank == 0:
        write_json(os.path.join(cfg.out_dir, RESULTS), results)
        print_table(results)
    return results
