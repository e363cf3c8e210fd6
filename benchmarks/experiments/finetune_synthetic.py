"""Synthetic check of fine-tuning: does a TimeCLR-pretrained encoder fine-tune to a better classifier
than the same network from random initialisation, with the same budget, and with how few labels?

What runs
---------
1. Pretraining: ``python -m timeclr.train`` with ``--pretrain-config`` (default
   pipelines/synthetic.yaml, the README's main command) into ``--pretrain-dir`` (default: that
   config's ``out_dir``). A finished run there, made with that config's model / train / views, is
   reused; otherwise it is trained or resumed there (synthetic.yaml: about 2.5 minutes on 2 cores).
2. Fine-tuning with ``--config`` (default pipelines/synthetic_finetune.yaml) from that checkpoint and
   from random initialisation, for each budget of ``--epochs`` (default: half the config's and the
   config's), ``--seeds`` seeds each: seed k sets ``train.seed`` and ``data.seed`` (classifier init,
   shuffling, frames, crops, dropout; for random init the backbone too). The rest is the config's.
3. Testing: each run's multi-view test (``finetune.test_clips`` x ``test_crops`` views, softmax
   averaged): top-1, top-5, mean per-class accuracy, one view's top-1, and the top-1 of each class
   group of the *pretraining* config's ``eval.groups`` (v2's, or v1's).
4. Below 100 % labels (``--label-fractions``, default 1 0.1 0.01) a run sees a class-balanced
   subset, ``max(1, round(f * n))`` of each class's n videos, repeated to the full length: the
   same steps, the config's budget (``finetune_manifests.py``). Each of ``--subset-seeds`` draws
   its own subset (the same for every seed and init); every (init, seed, subset) is a run, and at
   100 % there is one subset, the whole split. The default subset seeds, 101 102 103, were fixed
   for issue #30 before any result with them was seen (0 draws the one subset of earlier runs).
5. ``--pretrained-pattern runs/ablation/timeclr-seed{seed}/checkpoint.pt`` fine-tunes seed k from
   pretraining seed k (``--pretrain-config`` still names their config), so the spread includes the
   pretraining's; by default every seed fine-tunes step 1's checkpoint.
6. ``--split val`` chooses the recipe on the validation split, never on the test split: runs
   fine-tune on the train split less the validation videos (item 4's subsets are drawn from those)
   and are tested on those videos, the library's split (``validation_split`` by the pretraining
   config's ``eval.val_fraction`` and ``eval.val_seed``, as ``timeclr.train`` holds it out),
   written as manifests beside the train manifest for the runs' ``data.manifest`` and
   ``eval.test_manifest``.
7. v1's set: ``--config pipelines/synthetic_v1_finetune.yaml --pretrain-config pipelines/synthetic_v1.yaml``.

The summary pools the (seed, subset) runs of each (labels, epochs, init) cell: mean, sample std,
95 % t-interval, and the cell's pretrained-minus-random difference of the means (``*_margin``).
Runs live in ``runs/finetune_synthetic/<init>-seed<k>[-l<percent>-s<subset>][-e<N>][-val]``; one
whose saved config matches is reused (or resumed), so the script can be stopped and rerun.

How to run
----------
    python benchmarks/experiments/finetune_synthetic.py              # 48 runs: 2 inits x (2 budgets x 3 seeds
                                                                     # + 2 fractions x 3 seeds x 3 subsets)
    python benchmarks/experiments/finetune_synthetic.py --split val  # the same on the validation split
    python benchmarks/experiments/finetune_synthetic.py --quick      # a smoke run: 1 seed, 3 epochs, all labels

Writes ``benchmarks/results/finetune_synthetic[_<tag>].csv`` (one row per run, then one per cell),
``.json`` (the run's metadata) and ``.png`` (bars: mean ± std, dots: the runs), and prints the
tables; ``--split val`` adds ``val`` to the tag, ``--quick`` writes into ``benchmarks/results/quick/``.
"""
import argparse
import functools
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from timeclr.files import recorded
from timeclr.benchmarks.experiments.finetune_manifests import SUBSET_SEEDS, labelled_manifest, validation_manifests
from timeclr.benchmarks.harness import (REPO, finish_metadata, mean_std, print_meta, print_table, results_dir,
                                        run_metadata, save_figure, write_results)
from timeclr.training.plots import pyplot
from timeclr.files.atomic import write_json
from timeclr.training.checkpoints import load_checkpoint
from timeclr.config import Config, load_config
from timeclr.errors import ConfigError
from timeclr.evaluation.features import group_labels
from timeclr.finetune import finetune
from timeclr.pipelines.loader.clip_source import read_videos, read_videos_and_classes
from timeclr.pipelines.loader.video import VideoLoader
from timeclr.training.run import RunDir
from timeclr.synthetic.dataset import chosen_manifests, prepare_synthetic
from timeclr.train import train

INITS = {"pretrained": "TimeCLR-pretrained", "random": "random init (same network)"}
METRICS = [("top1", "top-1"), ("top5", "top-5"), ("mean_class_accuracy", "mean class"),
           ("single_view_top1", "1-view top-1")]


# ---------------------------------------------------------------------------------------------
# configs and the comparison of a saved run with the one asked for
# ---------------------------------------------------------------------------------------------


def absolute(cfg):
    """Paths relative to the repository made absolute, so the script runs from any folder."""
    for key in ("out_dir", "data.root"):
        value = OmegaConf.select(cfg, key)
        if value and not os.path.isabs(value):
            OmegaConf.update(cfg, key, str(REPO / value))
    return cfg


def with_defaults(cfg):
    """``cfg`` (a config or a saved dict) over the schema's defaults, so a run saved before a key
    existed still compares equal."""
    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    return OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(plain))


PRETRAIN_KEYS = ("model", "train", "data.views", "data.batch_size", "data.seed", "data.short_side", "synthetic")
FINETUNE_KEYS = ("model", "train", "finetune", "data.views", "data.batch_size", "data.seed", "data.short_side",
                 "data.manifest", "checkpoint", "eval.batch_size", "synthetic")
# this script names each run's test manifest (--split val: the validation split's); rotation_ceiling.py
# compares FINETUNE_KEYS, and its configs leave the test manifest to timeclr.finetune
RUN_KEYS = FINETUNE_KEYS + ("eval.test_manifest",)


def differences(saved, wanted, keys) -> list[str]:
    """``["key: A there, B now", ...]`` for each of ``keys`` (dotted paths) on which the saved run's
    config and the one asked for differ, defaults filled in on both sides."""
    return recorded.differences(with_defaults(saved), with_defaults(wanted), keys)


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------


def pretrained_checkpoint(args) -> Path:
    """The pretraining checkpoint: reused when finished with the config's recipe, else trained."""
    cfg = absolute(load_config(args.pretrain_config, [f"out_dir={args.pretrain_dir}"] if args.pretrain_dir else []))
    path = Path(RunDir(cfg.out_dir).checkpoint)
    if path.exists():
        ckpt = load_checkpoint(path)
        diff = differences(ckpt["config"], cfg, PRETRAIN_KEYS)
        if diff:
            raise SystemExit(f"finetune_synthetic: {path} was pretrained with another config than "
                             f"{args.pretrain_config}:\n" + "\n".join(diff) + "\nuse --pretrain-dir elsewhere")
        cfg.data.manifest, cfg.eval.test_manifest = chosen_manifests(cfg, *prepare_synthetic(cfg, rank=0))
        total = cfg.train.epochs * len(VideoLoader(cfg.data, read_videos(cfg.data.manifest)))
        if ckpt["step"] == total:
            print(f"pretraining: reusing {path} (step {total}/{total})", flush=True)
            return path
        print(f"pretraining: {path} stopped at step {ckpt['step']}/{total}: resuming", flush=True)
    t0 = time.perf_counter()
    print(f"pretraining: python -m timeclr.train {args.pretrain_config} out_dir={cfg.out_dir}", flush=True)
    train(cfg)
    print(f"pretraining took {time.perf_counter() - t0:.0f} s", flush=True)
    gc.collect()
    return path


def run_dir(args, init, seed, epochs, default_epochs, fraction=1.0, subset=None):
    """The run's folder (module docstring); a 100 % test-split run keeps its name from before #30."""
    return Path(args.out_root) / (f"{init}-seed{seed}" + ("" if fraction >= 1 else f"-l{100 * fraction:g}-s{subset}")
                                  + ("" if epochs == default_epochs else f"-e{epochs}")
                                  + ("-val" if args.split == "val" else ""))


def run_one(args, init, seed, epochs, checkpoint, default_epochs, fraction, subset, manifest, test_manifest):
    """Fine-tune (or reuse / resume) one run on ``manifest``, test it on ``test_manifest``; returns its row."""
    out_dir = run_dir(args, init, seed, epochs, default_epochs, fraction, subset)
    checkpoint = str(checkpoint).format(seed=seed)
    cfg = absolute(load_config(args.config, [f"out_dir={out_dir}", f"train.seed={seed}", f"data.seed={seed}",
                                             f"train.epochs={epochs}", f"data.manifest={manifest}",
                                             f"eval.test_manifest={test_manifest}", *args.set,
                                             f"checkpoint={checkpoint if init == 'pretrained' else 'random'}"]))
    row = dict(kind="run", init=init, seed=seed, subset="all" if fraction >= 1 else subset, labels=fraction,
               epochs=epochs, split=args.split, out_dir=os.path.relpath(out_dir, REPO))
    name = f"{init} seed {seed}" + ("" if fraction >= 1 else f", {fraction:.0%} labels subset {subset}")
    files = RunDir(out_dir)
    saved, results_json = Path(files.config), Path(files.finetune_results)
    if saved.exists():
        diff = differences(OmegaConf.load(saved), cfg, RUN_KEYS)
        if diff:
            raise SystemExit(f"finetune_synthetic: {out_dir} holds a run with another config:\n" + "\n".join(diff) +
                             "\ndelete the folder (or use --out-root) to start it afresh")
        if results_json.exists():
            done = json.loads(results_json.read_text())
            print(f"[{name}] done before: {results_json}", flush=True)
            return finish(row, done, out_dir, "reused", args.groups)
    resumed = Path(files.checkpoint).exists()
    load_start = os.getloadavg()[0]
    print(f"\n[{name}] fine-tuning {epochs} epochs in {out_dir} (load {load_start:.2f})", flush=True)
    t0 = time.perf_counter()
    results = finetune(cfg)
    results["seconds"] = round(time.perf_counter() - t0, 1)  # training and test, this invocation
    results["load_start"], results["load_end"] = round(load_start, 2), round(os.getloadavg()[0], 2)
    results["resumed"] = resumed
    write_json(results_json, results)
    gc.collect()  # the run's DALI pipelines and their threads
    return finish(row, results, out_dir, "resumed" if resumed else "ok", args.groups)


@functools.cache
def group_names(pretrain_config: str = str(REPO / "pipelines" / "synthetic.yaml")) -> dict:
    """A pretraining config's class groups (its ``eval.groups``; default synthetic.yaml's), read once."""
    return OmegaConf.to_container(load_config(str(pretrain_config)).eval.groups)


def group_top1(per_class: dict, groups: dict | None = None) -> dict:
    """``{top1_<group>: %}`` from a finetune.json's per-class accuracies (``groups``: default
    ``group_names()``): the scored split is class-balanced, so a group's top-1 is the mean of its
    classes' (the validation split up to rounding)."""
    return {f"top1_{g}": statistics.fmean(per_class[n] for n in names)
            for g, names in (group_names() if groups is None else groups).items()}


def finish(row, done, out_dir, status, groups):
    metrics = [json.loads(line) for line in open(RunDir(out_dir).metrics)]
    last_epoch = [m["loss"] for m in metrics if m["epoch"] == metrics[-1]["epoch"]]
    row.update({k: done[k] for k, _ in METRICS})
    row.update(group_top1(done["per_class"], groups))
    row.update(status=status + ("+resumed" if status == "reused" and done.get("resumed") else ""),
               seconds=done.get("seconds"), test_seconds=done.get("test_seconds"),
               clips_per_s=statistics.median(m["clips_per_s"] for m in metrics),
               final_loss=statistics.fmean(last_epoch), load_start=done.get("load_start"),
               load_end=done.get("load_end"))
    return row


def summarise(rows, groups):
    """Mean, sample std and 95 % interval over the (seed, subset) runs, one row per (labels, budget,
    init), and where both inits ran the cell's pretrained-minus-random margin (on both rows)."""
    keys, out = [k for k, _ in METRICS] + group_keys(groups), []
    for fraction in dict.fromkeys(r["labels"] for r in rows):
        for epochs in dict.fromkeys(r["epochs"] for r in rows):
            cell = {}
            for init in INITS:
                runs = [r for r in rows if r["init"] == init and r["epochs"] == epochs and r["labels"] == fraction]
                if runs:
                    cell[init] = dict(kind="summary", init=init, seed="", subset="", epochs=epochs, labels=fraction,
                                      split=runs[0]["split"], n=len(runs), status="",
                                      **mean_std(runs, keys + ["seconds", "clips_per_s", "final_loss"]))
            for k in keys if len(cell) == 2 else []:  # both inits ran: the margin, on both rows
                cell["pretrained"][f"{k}_margin"] = cell["random"][f"{k}_margin"] = cell["pretrained"][k] - cell["random"][k]
            out += cell.values()
    return out


# ---------------------------------------------------------------------------------------------
# metadata, report
# ---------------------------------------------------------------------------------------------


def metadata(args, cfg, checkpoint, load_start, t_start, scored):
    view = cfg.data.views[cfg.finetune.view]
    ft = cfg.finetune
    meta = run_metadata({
        "config": args.config, "pretraining config": args.pretrain_config,
        "pretrained checkpoint": str(checkpoint) if "{seed}" in str(checkpoint) else os.path.relpath(checkpoint, REPO),
        "labels": ", ".join(f"{f:.0%}" for f in args.label_fractions) + " of the train split"
                  + (" less the validation split" if args.split == "val" else "") + " (class-balanced, subset seeds "
                  f"{', '.join(map(str, args.subset_seeds))} below 100 %, repeated to the full length: the same steps)",
        "budget": f"{' or '.join(map(str, args.epochs))} epochs x {cfg.data.batch_size} clips/batch, "
                  f"{cfg.model.backbone} backbone, {cfg.train.optimizer} lr {cfg.train.lr:g} "
                  f"(backbone x{ft.backbone_lr:g}, layer decay {ft.layer_decay:g}), dropout {ft.dropout:g}, "
                  f"label smoothing {ft.label_smoothing:g}",
        "train view": f"{view.kind} {view.frames} frames, random resized crop {view.crop_size} scale "
                      f"{list(view.scale)}, flip {view.flip_prob:g}",
        "test": f"{ft.test_clips} clips x {ft.test_crops} crops, softmax averaged, {scored}",
        "seeds": ", ".join(map(str, range(args.seeds))),
    }, cuda=torch.cuda.is_available(), libs=("torch", "DALI"), load=(load_start, None, 0))
    return finish_metadata(meta, t_start)


def group_keys(groups: dict | None = None) -> list:
    return [f"top1_{g}" for g in (group_names() if groups is None else groups)]


def columns(groups) -> list:
    """The CSV's columns: each metric (overall, then per group) with its std, 95 % interval and margin."""
    return (["kind", "init", "seed", "subset", "labels", "epochs", "split", "n", "status"]
            + [k + s for k in [k for k, _ in METRICS] + group_keys(groups) for s in ("", "_std", "_ci95", "_margin")]
            + ["seconds", "seconds_std", "clips_per_s", "clips_per_s_std", "final_loss", "final_loss_std",
               "test_seconds", "load_start", "load_end", "out_dir"])


def report(rows, summary, meta, args, scored, n_classes):
    print()
    print_meta(meta)
    print("\nruns:")
    print_table(["init", "seed", "subset", "labels", "epochs", "status", *[h for _, h in METRICS], "s", "clips/s",
                 "last loss"],
                [[r["init"], str(r["seed"]), str(r["subset"]), f"{r['labels']:.0%}", str(r["epochs"]), r["status"],
                  *[f"{r[k]:.1f}" for k, _ in METRICS],
                  "-" if r.get("seconds") is None else f"{r['seconds']:.0f}", f"{r['clips_per_s']:.0f}",
                  f"{r['final_loss']:.3f}"] for r in rows])
    print(f"\nmean ± std [95 % interval] over the (seed, subset) runs, and pretrained minus random (%, {scored}):")
    print_table(["init", "labels", "epochs", "n", *[h for _, h in METRICS], "s per run", "top-1 margin"],
                [[s["init"], f"{s['labels']:.0%}", str(s["epochs"]), str(s["n"]),
                  *[f"{s[k]:.1f} ± {s[f'{k}_std']:.1f} [±{s[f'{k}_ci95']:.1f}]" for k, _ in METRICS],
                  "-" if s.get("seconds") is None else f"{s['seconds']:.0f}",
                  f"{s['top1_margin']:+.1f}" if s["init"] == "pretrained" and "top1_margin" in s else ""] for s in summary])
    groups = list(args.groups)
    print("\ntop-1 per class group, mean [95 % interval] over the (seed, subset) runs (%; pretrained: (margin)):")
    print_table(["init", "labels", "epochs", *groups],
                [[s["init"], f"{s['labels']:.0%}", str(s["epochs"]),
                  *[f"{s[f'top1_{g}']:.1f} [±{s[f'top1_{g}_ci95']:.1f}]" + (f" ({s[f'top1_{g}_margin']:+.1f})" if
                    s["init"] == "pretrained" and f"top1_{g}_margin" in s else "") for g in groups]] for s in summary])
    tag = args.tag or ("quick" if args.quick else "")  # --split val's results are tagged val
    tag = tag if args.split == "test" or "val" in tag.replace("-", "_").split("_") else f"{tag}_val".lstrip("_")
    stem = results_dir(args.out, args.quick) / ("finetune_synthetic" + (f"_{tag}" if tag else ""))
    csv_path, json_path = write_results(stem, meta, columns(args.groups), rows + summary)
    plot(rows, summary, meta, f"{stem}.png", scored, n_classes)
    print(f"\nwrote {csv_path}, {json_path} and {stem}.png")


def plot(rows, summary, meta, path, scored="synthetic test split", n_classes=8):
    """Grouped bars, one group per metric, one bar per init: mean ± std, the (seed, subset) runs as dots."""
    plt = pyplot()
    settings = list(dict.fromkeys((s["labels"], s["epochs"]) for s in summary))
    shades = {"pretrained": ["#fddbc7", "#f4a582", "#d6604d", "#b2182b"],
              "random": ["#f0f0f0", "#d9d9d9", "#a6a6a6", "#737373"]}
    width = 0.8 / max(1, len(summary))
    fig, ax = plt.subplots(figsize=(11, 4.8))
    for i, s in enumerate(summary):
        xs = [g + (i - (len(summary) - 1) / 2) * width for g in range(len(METRICS))]
        shade = shades[s["init"]][max(0, min(settings.index((s["labels"], s["epochs"])) + 4 - len(settings), 3))]
        ax.bar(xs, [s[k] for k, _ in METRICS], width * 0.9, yerr=[s[f"{k}_std"] for k, _ in METRICS], capsize=3,
               color=shade, edgecolor="0.3", lw=0.3,
               label=f"{INITS[s['init']]}, {s['labels']:.0%} labels, {s['epochs']} epochs, n={s['n']}")
        for x, (k, _) in zip(xs, METRICS):
            pts = [r[k] for r in rows if r["init"] == s["init"] and r["epochs"] == s["epochs"]
                   and r["labels"] == s["labels"]]
            ax.plot([x] * len(pts), pts, "k.", ms=4)
            ax.text(x, s[k] + s[f"{k}_std"] + 0.8, f"{s[k]:.1f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(METRICS)), [h for _, h in METRICS])
    ax.set_ylabel(f"% ({scored.split(' (')[0]}, {n_classes} classes)")
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.axhline(100 / n_classes, color="0.5", lw=0.8, ls=":")  # chance
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    save_figure(fig, "Fine-tuning on the synthetic motion set", {k: v for k, v in meta.items() if k != "command"},
                path, fontsize=6.5)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="pipelines/synthetic_finetune.yaml",
                        help="the fine-tuning config (v1: pipelines/synthetic_v1_finetune.yaml)")
    parser.add_argument("--pretrain-config", default="pipelines/synthetic.yaml", help="the pretraining config "
                        "(also --pretrained-pattern's), of the class groups and the validation split too (v1: "
                        "pipelines/synthetic_v1.yaml)")
    parser.add_argument("--pretrain-dir", help="where the pretraining run is (or goes); default: its config's out_dir")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 for each init")
    parser.add_argument("--epochs", type=int, nargs="+", default=None,
                        help="budgets in epochs at 100%% labels (default: half the config's, and the config's)")
    parser.add_argument("--label-fractions", type=float, nargs="+", default=[1.0, 0.1, 0.01],
                        help="fractions of the train labels fine-tuning sees (class-balanced; default 1 0.1 0.01)")
    parser.add_argument("--subset-seeds", type=int, nargs="+", default=list(SUBSET_SEEDS),
                        help="below 100 %% labels, one class-balanced subset per seed, each (init, seed, subset) a "
                        "run (default 101 102 103, fixed before any result; 0: the subset of the runs before #30)")
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="val: fine-tune on the train split less the validation split, score on that (choose "
                        "the recipe there, never on test); run folders get -val, result files the tag val")
    parser.add_argument("--pretrained-pattern", default=None,
                        help="checkpoint of seed k's pretraining, '{seed}' standing for k (e.g. "
                        "runs/ablation/timeclr-seed{seed}/checkpoint.pt); default: one pretraining run for all seeds")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides of the fine-tuning config, e.g. model.backbone=small_wide for checkpoints "
                        "of pipelines/synthetic_v1_wide.yaml (the random init gets them too)")
    parser.add_argument("--out-root", default="runs/finetune_synthetic")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 3 epochs, all labels, into "
                        "benchmarks/results/quick/ (git-ignored)")
    parser.add_argument("--out", help="output folder (default benchmarks/results/, --quick: benchmarks/results/quick/)")
    parser.add_argument("--tag", default="", help="suffix of the result files (default: 'quick' with --quick; "
                        "--split val adds 'val')")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.label_fractions = 1, args.epochs or [3], [1.0]
    if not all(0 < f <= 1 for f in args.label_fractions) or len(set(args.subset_seeds)) < len(args.subset_seeds) \
            or min(args.subset_seeds) < 0:
        raise SystemExit("finetune_synthetic: --label-fractions must be in (0, 1], --subset-seeds distinct and >= 0")
    if args.epochs and max(args.label_fractions) < 1:  # it would change nothing (it once passed 20-epoch runs as 40)
        raise SystemExit("finetune_synthetic: --epochs is for 100 % labels; below it use --set train.epochs=N")
    t0, load_start = time.perf_counter(), os.getloadavg()[0]
    # the groups and the validation split are the pretraining config's: both configs must name one set
    cfg, pre = absolute(load_config(args.config, args.set)), absolute(load_config(args.pretrain_config))
    args.epochs = args.epochs or [cfg.train.epochs // 2, cfg.train.epochs]
    diff = [f"{k}: {OmegaConf.select(with_defaults(c), k)} in {flag}" for k in ("data.root", "synthetic")
            if differences(pre, cfg, [k]) for c, flag in ((pre, "--pretrain-config"), (cfg, "--config"))]
    if diff:
        raise SystemExit("finetune_synthetic: --config and --pretrain-config name different synthetic sets (v1: "
                         "pipelines/synthetic_v1_finetune.yaml and pipelines/synthetic_v1.yaml):\n" + "\n".join(diff))
    missing = [c for c in (args.pretrained_pattern.format(seed=k) for k in range(args.seeds)) if not Path(c).exists()] \
        if args.pretrained_pattern else []
    if missing:
        raise SystemExit(f"finetune_synthetic: no pretraining checkpoint {missing[0]} "
                         "(run benchmarks/experiments/ablation.py)")
    # manifests, groups and split before any pretraining, so a mistake there costs no training
    cfg.data.manifest, cfg.eval.test_manifest = chosen_manifests(cfg, *prepare_synthetic(cfg, rank=0))
    args.groups, (_, classes) = group_names(args.pretrain_config), read_videos_and_classes(cfg.data.manifest)
    group_labels(args.groups, classes)  # a group naming a class the set lacks: a ConfigError naming it
    train_manifest, test_manifest = cfg.data.manifest, cfg.eval.test_manifest
    scored = f"synthetic test split ({os.path.relpath(test_manifest, REPO)})"
    if args.split == "val":
        if not pre.eval.val_fraction:
            raise SystemExit(f"finetune_synthetic: --split val needs eval.val_fraction in {args.pretrain_config}")
        train_manifest, test_manifest = validation_manifests(train_manifest, pre.eval.val_fraction, pre.eval.val_seed)
        scored = (f"validation split ({pre.eval.val_fraction:.0%} of each class of "
                  f"{os.path.relpath(cfg.data.manifest, REPO)}, val_seed {pre.eval.val_seed})")
        print(f"--split val: fine-tuning on {train_manifest}, scoring on {test_manifest}", flush=True)
    checkpoint = args.pretrained_pattern or pretrained_checkpoint(args)
    rows = []
    for fraction in args.label_fractions:
        for subset in (args.subset_seeds if fraction < 1 else [None]):
            manifest = labelled_manifest(train_manifest, fraction, subset)
            for epochs in (args.epochs if fraction >= 1 else [cfg.train.epochs]):
                for seed in range(args.seeds):
                    for init in INITS:
                        rows.append(run_one(args, init, seed, epochs, checkpoint, cfg.train.epochs, fraction,
                                            subset, manifest, test_manifest))
    summary = summarise(rows, args.groups)
    report(rows, summary, metadata(args, cfg, checkpoint, load_start, t0, scored), args, scored, len(classes))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as e:  # a config, a group or a checkpoint of another model: one line, no traceback
        sys.exit(f"finetune_synthetic: {e}")
