"""Frozen-feature evaluation of an encoder: features of every video of a split from the eval
pipeline (deterministic frame selection, short-side resize, centre crop), scored by
``timeclr.evaluation.metrics`` (linear probe, kNN, retrieval R@k, and each of ``eval.groups`` on its own).
Shared by ``timeclr.evaluate``, the end of ``timeclr.train`` and its online kNN (``OnlineKNN``).

Splits (``eval.split``): ``test`` fits on the whole train manifest and scores on the test manifest;
``val`` fits on the train manifest less a validation split and scores on that split. The
validation split (``validation_split``) takes ``eval.val_fraction`` of each class's videos, drawn
by ``eval.val_seed`` alone, so every run, seed and variant is validated on the same videos.
Pretraining itself (no labels) still sees all train videos. ``EvalSplits`` reads each manifest
once per run and is handed down to everything that evaluates (each encoder, the table's heading,
the online kNN).
"""
import copy
import functools
import os

import numpy as np
import torch
from tqdm import tqdm

from timeclr.files.atomic import write_json
from timeclr.errors import ConfigError
from timeclr.evaluation.metrics import evaluate_features, knn_top1
from timeclr.pipelines.loader.clip_source import read_videos, read_videos_and_classes
from timeclr.pipelines.loader.video import VideoLoader
from timeclr.training.distributed import gather_in_order, to_device
from timeclr.training.run import RunDir, random_model

KEYS = ["linear_top1", "knn_top1", "retrieval_r1", "retrieval_r5", "retrieval_r10", "retrieval_r20"]
LABELS = {"linear_top1": "linear top-1", "knn_top1": "kNN top-1", "retrieval_r1": "R@1", "retrieval_r5": "R@5",
          "retrieval_r10": "R@10", "retrieval_r20": "R@20"}


def eval_data_config(cfg, all_views: bool = False):
    """The data config of the eval pipeline: one view (``eval.view``; ``all_views``: every view of
    ``data.views``), deterministic, no augmentation."""
    data = copy.deepcopy(cfg.data)
    data.views = list(cfg.data.views) if all_views else [cfg.data.views[cfg.eval.view]]
    data.train, data.augment, data.drop_last = False, False, False
    data.batch_size = cfg.eval.batch_size
    return data


def validation_split(videos, fraction: float, seed: int = 0) -> tuple[list, list]:
    """(fit, val): ``round(fraction * n)`` of each class's n videos (at least one while the class
    keeps one to fit on) drawn by ``seed`` into val, the rest into fit; both in manifest order."""
    by_label = {}
    for i, v in enumerate(videos):
        by_label.setdefault(v.label, []).append(i)
    val = set()
    for label, members in by_label.items():
        k = min(max(1, round(fraction * len(members))), len(members) - 1) if fraction > 0 else 0
        rng = np.random.default_rng([seed, label])
        val.update(members[j] for j in rng.permutation(len(members))[:k].tolist())
    return [v for i, v in enumerate(videos) if i not in val], [v for i, v in enumerate(videos) if i in val]


def group_labels(groups, classes: list[str]) -> dict:
    """``eval.groups`` ({group: [class names]}) as {group: [labels]}, by the train manifest's
    class list ``classes``; a name that is no class is a ConfigError naming the group."""
    out = {}
    for group, names in (groups or {}).items():
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise ConfigError(f"eval.groups.{group}: {unknown} are not classes of the manifest (its classes: {classes})")
        out[group] = [classes.index(n) for n in names]
    return out


class EvalSplits:
    """The labelled videos a run evaluates on, each manifest read once and handed down (to every
    encoder evaluated, the table's heading, the online kNN) instead of read again by each:

        train, classes   the train manifest's videos and class list (``eval.train_manifest``,
                         default ``data.manifest``), read here
        groups           ``eval.groups`` as labels (``group_labels``), checked here
        test             the test manifest's videos, read when first asked for (an online kNN
                         alone never reads it)
        validation       (fit, val): the validation split carved from ``train`` (``validation_split``)
    """

    def __init__(self, cfg):
        e = cfg.eval
        self.train_manifest, self.test_manifest = e.train_manifest or cfg.data.manifest, e.test_manifest
        if not self.train_manifest:
            raise ConfigError("evaluation needs eval.train_manifest or data.manifest (the labelled train videos)")
        self.val_fraction, self.val_seed = e.val_fraction, e.val_seed
        self.train, self.classes = read_videos_and_classes(self.train_manifest)
        self.groups = group_labels(e.groups, self.classes)

    @functools.cached_property
    def test(self) -> list:
        return read_videos(self.test_manifest)

    @functools.cached_property
    def validation(self) -> tuple[list, list]:
        return validation_split(self.train, self.val_fraction, self.val_seed)

    def fit_and_scored(self, split: str) -> tuple[list, list, str]:
        """(videos to fit on, videos to score, what the scored split is) for ``split`` (``eval.split``)."""
        if split == "val":
            fit, val = self.validation
            return fit, val, f"validation split ({self.val_fraction:.0%} of {self.train_manifest} per class)"
        return self.train, self.test, f"test split {self.test_manifest}"


@torch.no_grad()
def extract_view_features(model, data, videos, device, desc: str = "features"):
    """([(N, F) features of each view of ``data``], (N,) labels) of ``videos`` (a list, or a
    manifest path), in that order, every view from one pass of the pipeline. Under DDP each rank
    extracts its shard and every rank gets them all (``distributed.gather_in_order``). Rank 0
    shows a progress bar named ``desc``. Leaves the model in eval mode."""
    loader = VideoLoader(data, read_videos(videos) if isinstance(videos, (str, os.PathLike)) else videos)
    feats, labels, order = [[] for _ in data.views], [], []
    model.eval()
    rank0 = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not rank0, leave=False, dynamic_ncols=True):
        for v, clips in enumerate(batch["views"]):
            feats[v].append(model.features(to_device(clips, device)).float().cpu())
        labels.append(batch["label"].cpu())
        order.append(batch["index"].cpu())
    parts = {f"view{v}": (torch.cat(f), 0) for v, f in enumerate(feats)}
    out = gather_in_order({**parts, "labels": (torch.cat(labels), 0)}, torch.cat(order))
    return [out[f"view{v}"] for v in range(len(feats))], out["labels"]


def extract_features(model, data, videos, device, desc: str = "features"):
    """(N, F) features of ``data``'s first view and (N,) labels: ``extract_view_features`` for one view."""
    feats, labels = extract_view_features(model, data, videos, device, desc)
    return feats[0], labels


def clip_names(views) -> list[str]:
    """What each view's clip is called in ``by_clip``: its kind ('segment', 'interval') where the
    kinds are all different, else ``view<i>_<kind>``."""
    kinds = [v.kind for v in views]
    return kinds if len(set(kinds)) == len(kinds) else [f"view{i}_{k}" for i, k in enumerate(kinds)]


def evaluate_model(cfg, model, device, name: str = "encoder", splits: EvalSplits | None = None) -> dict:
    """The six metrics of ``model``'s frozen features (fit -> scored split of ``eval.split``),
    and each of ``eval.groups``'s kNN and linear top-1. ``splits``: the run's ``EvalSplits``
    (read here when not given)."""
    splits = EvalSplits(cfg) if splits is None else splits
    fit, scored, _ = splits.fit_and_scored(cfg.eval.split)
    per_view = cfg.eval.per_view and len(cfg.data.views) > 1
    data = eval_data_config(cfg, all_views=per_view)
    train_x, train_y = extract_view_features(model, data, fit, device, desc=f"{name}: train-split features")
    test_x, test_y = extract_view_features(model, data, scored, device, desc=f"{name}: {cfg.eval.split}-split features")
    score = lambda a, b: evaluate_features(a, train_y, b, test_y, k=cfg.eval.knn_k, groups=splits.groups)  # noqa: E731
    main = cfg.eval.view if per_view else 0
    out = score(train_x[main], test_x[main])
    if per_view:  # each view's clip alone, then all of them side by side (what a feature can show
        names = clip_names(cfg.data.views)  # depends on the clip it is computed from)
        out["by_clip"] = {n: score(a, b) for n, a, b in zip(names, train_x, test_x)}
        out["by_clip"]["+".join(names)] = score(torch.cat(train_x, 1), torch.cat(test_x, 1))
    return out


class OnlineKNN:
    """kNN top-1 on the validation split during pretraining (``train.knn_every``): the eval
    pipeline's features of the fit and validation videos of ``splits`` (the run's
    ``EvalSplits``), k = ``eval.knn_k``. Every rank calls it (each extracts its shard); the model
    is put back in training mode."""

    def __init__(self, cfg, splits: EvalSplits):
        self.data, self.k = eval_data_config(cfg), cfg.eval.knn_k
        self.fit, self.val, _ = splits.fit_and_scored("val")

    def __call__(self, model, device) -> float:
        train_x, train_y = extract_features(model, self.data, self.fit, device, desc="online kNN: fit features")
        val_x, val_y = extract_features(model, self.data, self.val, device, desc="online kNN: val features")
        model.train()
        return knn_top1(train_x, train_y, val_x, val_y, k=self.k)


def describe_split(cfg, splits: EvalSplits) -> str:
    """What the numbers are measured on: the scored split's size, classes and chance level."""
    fit, scored, what = splits.fit_and_scored(cfg.eval.split)
    classes = len({v.label for v in scored})
    return (f"{what}: {len(scored)} videos, {classes} classes (chance {100 / max(classes, 1):.1f}%); "
            f"probe and kNN fitted on {len(fit)} train-split videos; kNN k={cfg.eval.knn_k}")


def print_table(results: dict, about: str = "", saved: str = ""):
    """``{encoder: {metric: percent}}`` as a table, one row per encoder, with what it was
    measured on (``about``) above it and where it was written (``saved``) below."""
    if about:
        print(about)
    rows = [(name, m) for name, m in results.items()]
    rows += [(f"{name} | {clip}", m) for name, metrics in results.items()  # eval.per_view: each clip kind
             for clip, m in metrics.get("by_clip", {}).items()]
    width = max(16, *(len(label) + 2 for label, _ in rows))
    print(f"{'encoder':<{width}}" + "".join(f"{LABELS[k]:>13}" for k in KEYS))
    for label, m in rows:
        print(f"{label:<{width}}" + "".join(f"{m[k]:>13.1f}" for k in KEYS))
    groups = sorted({k[len("knn_top1_"):] for m in results.values() for k in m if k.startswith("knn_top1_")})
    if groups:  # one row per group: each encoder's kNN and linear top-1, and the margin over random init
        names = list(results)
        margin = "pretrained" in results and "random_init" in results
        label = {n: n.replace("_", " ") for n in names}
        head = ([f"kNN {label[n]}" for n in names] + (["kNN margin"] if margin else []) + [f"linear {label[n]}" for n in names])
        gw = max(16, *(len(g) + 2 for g in groups))
        cw = max(13, *(len(h) + 2 for h in head))
        print(f"\n{'class group':<{gw}}" + "".join(f"{h:>{cw}}" for h in head))
        for g in groups:
            cells = [f"{results[n][f'knn_top1_{g}']:.1f}" for n in names]
            if margin:
                cells.append(f"{results['pretrained'][f'knn_top1_{g}'] - results['random_init'][f'knn_top1_{g}']:+.1f}")
            cells += [f"{results[n][f'linear_top1_{g}']:.1f}" for n in names]
            print(f"{g:<{gw}}" + "".join(f"{c:>{cw}}" for c in cells))
    if saved:
        print(f"(percent; written to {saved})")


def evaluate_run(cfg, model, device, splits: EvalSplits, rank: int = 0) -> dict:
    """End of training: the trained encoder and (``eval.random_init``) the same one untrained, on
    the run's ``splits``. Every rank calls it (each extracts its shard of the features); rank 0
    writes ``out_dir/eval.json`` and prints the table."""
    results = {"pretrained": evaluate_model(cfg, model, device, "pretrained", splits)}
    if cfg.eval.random_init:
        results["random_init"] = evaluate_model(cfg, random_model(cfg, device), device, "random init", splits)
    if rank == 0:
        path = RunDir(cfg.out_dir).eval_results
        write_json(path, results)
        print_table(results, describe_split(cfg, splits), path)
    return results
