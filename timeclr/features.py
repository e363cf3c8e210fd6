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
from timeclr.run import random_model

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
    """(N, F) encoder features and (N,) labels of every video of ``manifest``, in manifest order."""
    loader = VideoLoader(data, read_videos(manifest), shard_id=0, num_shards=1)
    feats, labels, order = [], [], []
    model.eval()
    for batch in loader:
        feats.append(model.features(batch["views"][0].to(device)).float().cpu())
        labels.append(batch["label"].cpu())
        order.append(batch["index"].cpu())
    order = torch.cat(order)
    feats, labels = torch.cat(feats)[order.argsort()], torch.cat(labels)[order.argsort()]
    return feats, labels


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


def evaluate_run(cfg, model, device) -> dict:
    """End of training: the trained encoder and (``eval.random_init``) the same one untrained,
    written to ``out_dir/eval.json`` and printed."""
    results = {"pretrained": evaluate_model(cfg, model, device)}
    if cfg.eval.random_init:
        results["random_init"] = evaluate_model(cfg, random_model(cfg, device), device)
    write_json(os.path.join(cfg.out_dir, RESULTS), results)
    print_table(results)
    return results
