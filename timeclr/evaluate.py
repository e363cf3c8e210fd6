"""Evaluate a video encoder on frozen features: ``python -m timeclr.evaluate CONFIG checkpoint=PATH|random``.

Features come from the eval pipeline (deterministic frame selection, short-side resize, centre
crop) for every video of the train split (``eval.train_manifest``, default ``data.manifest``) and
the test split (``eval.test_manifest``). Protocols (``timeclr.metrics``): linear probe top-1,
kNN top-1 (cosine, k = ``eval.knn_k``) and retrieval R@1/5/10/20 (test queries against train).
Writes ``eval.json`` (percentages) in ``out_dir``.
"""
import argparse
import copy
import json
import os
import sys

import torch
from omegaconf import OmegaConf

from timeclr.config import ConfigError, ModelConfig, load_config
from timeclr.metrics import evaluate_features
from timeclr.models import build_model
from timeclr.pipelines.video import VideoLoader, read_videos

KEYS = ["linear_top1", "knn_top1", "retrieval_r1", "retrieval_r5", "retrieval_r10", "retrieval_r20"]


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


def random_model(cfg, device):
    torch.manual_seed(cfg.train.seed + 1)
    return build_model(cfg.model).to(device)


def print_table(results: dict):
    print(f"{'encoder':<14}" + "".join(f"{k:>15}" for k in KEYS))
    for name, metrics in results.items():
        print(f"{name:<14}" + "".join(f"{metrics[k]:>15.1f}" for k in KEYS))


def evaluate_run(cfg, model, device) -> dict:
    """End of training: the trained encoder and (``eval.random_init``) the same one untrained."""
    results = {"pretrained": evaluate_model(cfg, model, device)}
    if cfg.eval.random_init:
        results["random_init"] = evaluate_model(cfg, random_model(cfg, device), device)
    with open(os.path.join(cfg.out_dir, "eval.json"), "w") as f:
        json.dump(results, f, indent=2)
    print_table(results)
    return results


def load_encoder(cfg, device):
    """The model of ``cfg.checkpoint`` ('random' = untrained), checked against the config's architecture."""
    if cfg.checkpoint == "random":
        return random_model(cfg, device)
    if not os.path.exists(cfg.checkpoint):
        raise ConfigError(f"checkpoint: {cfg.checkpoint} does not exist")
    ckpt = torch.load(cfg.checkpoint, map_location=device, weights_only=False)
    # keys added to ModelConfig after a checkpoint was written take their defaults
    saved = ckpt.get("config", {}).get("model", {})
    saved = {**OmegaConf.to_container(OmegaConf.structured(ModelConfig)), **saved} if saved else saved
    wanted = OmegaConf.to_container(cfg.model)
    if saved and saved != wanted:
        raise ConfigError(f"checkpoint {cfg.checkpoint} holds model {saved}, but the config asks for {wanted}")
    model = build_model(cfg.model).to(device)
    model.load_state_dict(ckpt["model"])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m timeclr.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="checkpoint=PATH|random, eval.knn_k=10 ...")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        if not cfg.checkpoint:
            raise ConfigError("say which encoder to evaluate: checkpoint=PATH or checkpoint=random")
        if cfg.synthetic.enabled:
            from timeclr.train import prepare_synthetic

            prepare_synthetic(cfg, rank=0)
        if not cfg.eval.test_manifest:
            raise ConfigError("eval.test_manifest is empty: which split should the features be scored on?")
        from timeclr.pipelines.datasets import require_manifest

        require_manifest(cfg.eval.train_manifest or cfg.data.manifest, cfg.data,
                         "eval.train_manifest" if cfg.eval.train_manifest else "data.manifest")
        require_manifest(cfg.eval.test_manifest, cfg.data, "eval.test_manifest")
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        metrics = evaluate_model(cfg, load_encoder(cfg, device), device)
    except (ConfigError, OSError) as e:
        raise SystemExit(f"timeclr.evaluate: {e}") from None
    os.makedirs(cfg.out_dir, exist_ok=True)
    with open(os.path.join(cfg.out_dir, "eval.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print_table({os.path.basename(str(cfg.checkpoint)): metrics})
    return 0


if __name__ == "__main__":
    sys.exit(main())
