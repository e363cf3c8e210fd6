"""The ablation's setups (``ablation.py``): what each variant trains on (its views, everything
else the config's), the one protocol every variant is evaluated with, where each run lives, and the
check that a run folder holds the run asked for. Why: ``ablation.py``'s docstring.
"""
import copy
import os
from pathlib import Path

from omegaconf import OmegaConf

from timeclr.benchmarks.harness import REPO
from timeclr.config import Config, ViewConfig, load_config
from timeclr.files.recorded import differences
from timeclr.training.run import RunDir
from timeclr.synthetic.dataset import chosen_manifests, prepare_synthetic

DESIGNS_FILE = REPO / "pipelines" / "view_designs.yaml"
DESIGNS = OmegaConf.to_container(OmegaConf.load(DESIGNS_FILE))  # name -> {about, views}
VARIANTS = {name: d["about"] for name, d in DESIGNS.items()}
FRAMES = 8
INTERVAL_STRIDES = [1, 2, 3]


def base_config(path):
    """The experiment config, paths made absolute, the synthetic data generated if absent."""
    cfg = load_config(path)
    if not os.path.isabs(cfg.data.root):
        cfg.data.root = str(REPO / cfg.data.root)
    if cfg.synthetic.enabled:
        cfg.data.manifest, cfg.eval.test_manifest = chosen_manifests(cfg, *prepare_synthetic(cfg, rank=0))
    if len(cfg.data.views) != 2:
        raise SystemExit(f"ablation: {path} has {len(cfg.data.views)} views; the ablation compares 2-view setups")
    return cfg


def variant_views(cfg, variant):
    """The views of ``variant`` (``pipelines/view_designs.yaml``): view i is the config's view i
    (its crop and augmentation; past the config's last view, view i mod V) with the design's
    temporal keys (kind, frames, strides, start, anchor) set."""
    if variant not in DESIGNS:
        raise ValueError(f"unknown variant {variant!r}: {DESIGNS_FILE} has {list(DESIGNS)}")
    views = [OmegaConf.to_container(v) for v in cfg.data.views]
    return [{**copy.deepcopy(views[i % len(views)]), **design} for i, design in enumerate(DESIGNS[variant]["views"])]


def eval_view(cfg, kind="segment"):
    """The one view every variant is evaluated with: the config's first view of ``kind`` (its crop
    size is the one that matters in eval mode) as a ``kind`` view of FRAMES frames; an interval
    eval view takes the first of INTERVAL_STRIDES (1: 8 consecutive frames, centred)."""
    views = [OmegaConf.to_container(v) for v in cfg.data.views]
    view = next((v for v in views if v["kind"] == kind), views[0])
    if kind == "interval":
        return {**view, "kind": "interval", "frames": FRAMES, "strides": list(INTERVAL_STRIDES)}
    return {**view, "kind": "segment", "frames": FRAMES}


EVAL_KINDS = ("segment", "interval", "both")


def eval_views(cfg, kind="segment"):
    """The eval view(s) of ``kind``: 'both' is the segment and the interval view, whose features
    are scored side by side (``eval.per_view``'s 'segment+interval')."""
    return [eval_view(cfg, k) for k in (("segment", "interval") if kind == "both" else (kind,))]


def clip_metrics(metrics, kind):
    """The metrics of ``kind``'s features from ``evaluate_model``'s result."""
    return metrics["by_clip"]["segment+interval"] if kind == "both" else metrics


def eval_file(kind, split="test"):
    """The primary protocol (segment view, test split) writes eval.json, the others
    eval_interval.json, eval_val.json, eval_interval_val.json."""
    parts = [p for p in ("eval", "" if kind == "segment" else kind, "" if split == "test" else split) if p]
    return "_".join(parts) + ".json"


def protocol(cfg, kind="segment", split="test"):
    """What the evaluation depends on, stored in each eval.json: a changed protocol re-evaluates."""
    def described(v):
        return {k: v[k] for k in ("kind", "frames", "crop_size") + (("strides",) if v["kind"] == "interval" else ())}

    views = [described(v) for v in eval_views(cfg, kind)]
    return {"view": views[0] if len(views) == 1 else views, "short_side": cfg.data.short_side,
            "knn_k": cfg.eval.knn_k, "batch_size": cfg.eval.batch_size,
            "train_manifest": os.path.basename(cfg.eval.train_manifest or cfg.data.manifest),
            "test_manifest": os.path.basename(cfg.eval.test_manifest), "split": split,
            "val": [cfg.eval.val_fraction, cfg.eval.val_seed], "groups": OmegaConf.to_container(cfg.eval.groups)}


def run_dir(root, variant, seed, epochs, default_epochs):
    return Path(root) / (f"{variant}-seed{seed}" + ("" if epochs == default_epochs else f"-e{epochs}"))


def variant_config(base, variant, seed, epochs, out_dir):
    cfg = copy.deepcopy(base)
    cfg.data.views = [ViewConfig(**v) for v in variant_views(base, variant)]
    cfg.train.seed = cfg.data.seed = seed
    cfg.train.epochs = epochs
    cfg.train.evaluate = False  # evaluated afterwards, with the common protocol (eval_config)
    cfg.out_dir = str(out_dir)
    return cfg


def eval_config(cfg, checkpoint="", kind="segment", split="test"):
    """``cfg`` with the common eval view(s) as its views (eval.view = 0; 'both': each scored alone
    and side by side), scored on ``split``, no random-init baseline."""
    ecfg = copy.deepcopy(cfg)
    ecfg.data.views = [ViewConfig(**v) for v in eval_views(cfg, kind)]
    ecfg.eval.view = 0
    ecfg.eval.per_view = kind == "both"
    ecfg.eval.split = split
    ecfg.eval.random_init = False
    ecfg.checkpoint = str(checkpoint)
    return ecfg


def check_same_run(cfg):
    """Refuse to resume a run folder that was made with another config."""
    saved_path = Path(RunDir(cfg.out_dir).config)
    if not saved_path.exists():
        return
    saved = OmegaConf.load(saved_path)
    try:  # keys added to the schema since the run was made take their defaults (e.g. model.norm)
        saved = OmegaConf.merge(OmegaConf.structured(Config), saved)
    except Exception:  # noqa: BLE001 -- a key removed since: compare as saved
        pass
    diff = differences(saved, cfg, ("data.views", "data.seed", "data.batch_size", "train", "model"))
    if diff:
        raise SystemExit(f"ablation: {cfg.out_dir} holds a run with another config:\n  " + "\n  ".join(diff) +
                         "\ndelete the folder (or use --out-root) to start it afresh")
