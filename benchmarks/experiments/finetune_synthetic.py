"""Synthetic check of fine-tuning: does a TimeCLR-pretrained encoder fine-tune to a better classifier
than the same network from random initialisation, with the same budget?

What runs
---------
1. Pretraining: the checkpoint of ``python -m timeclr.train pipelines/synthetic.yaml`` (the
   README's main command, ``runs/synthetic/checkpoint.pt``). A finished run there, made with that
   config's model / train / views, is reused; otherwise it is trained (or resumed) there, with the
   evaluation the command always does (about 3-4 minutes on 2 idle cores).
2. Fine-tuning, ``pipelines/synthetic_finetune.yaml`` (``timeclr.finetune``), from that checkpoint
   and from random initialisation, for each budget of ``--epochs`` (default: half the config's
   epochs and the config's: whether pretraining helps depends on how long the classifier trains),
   ``--seeds`` seeds each: seed k sets ``train.seed`` and
   ``data.seed`` (classifier initialisation, shuffling, frame positions, crops, dropout masks; for
   random init also the backbone, ``train.seed + 1`` as in ``timeclr.evaluate.random_model``).
   Everything else, budget included, is the config's. One pretraining run serves every seed, so
   the spread over seeds is the fine-tuning's, not the pretraining's.
3. Testing: each run's multi-view test on the synthetic test split (``finetune.test_clips`` clips x
   ``finetune.test_crops`` crops, softmax averaged): top-1, top-5, mean per-class accuracy, and the
   mean top-1 of a single view.

4. Label fractions (``--label-fractions``, default 1, 0.1, 0.01): fine-tuning sees a
   class-balanced subset of the train split, ``max(1, round(f * n))`` videos of each class's n
   (drawn once by ``SUBSET_SEED``, the same for every seed and init), listed in a manifest beside
   the full one with each chosen video repeated to the full manifest's length, so a run takes as
   many steps of the same batch size as at 100 %: the same budget. Below 100 % only the config's
   budget runs. Pretraining, which needs no labels, still saw every train video.
5. ``--pretrained-pattern runs/ablation/timeclr-seed{seed}/checkpoint.pt`` fine-tunes seed k
   from the pretraining run of seed k (the ablation's TimeCLR runs), so the spread includes the
   pretraining's; by default every seed starts from the one checkpoint of step 1.

Runs live in ``runs/finetune_synthetic/<init>-seed<k>`` (``-l<percent>`` below 100 %, ``-e<N>`` with ``--epochs``). A run whose
``finetune.json`` exists and whose saved config matches is reused; an interrupted one resumes
(``timeclr.finetune`` does that), so the script can be stopped and rerun.

How to run
----------
    python benchmarks/experiments/finetune_synthetic.py           # 2 inits x 2 budgets x 3 seeds: 3 min 48 s on 2 cores
                                                                  # (+ ~3 min of pretraining when runs/synthetic has none)
    python benchmarks/experiments/finetune_synthetic.py --quick   # a smoke run: 1 seed, 3 epochs, all labels

Writes ``benchmarks/results/finetune_synthetic[_<tag>].csv`` (a plain CSV: one row per run, then
mean and sample std per init), ``.json`` (the run's metadata: machine, command, git revision,
versions, load) and ``.png`` (bars: mean ± std, dots: the seeds), and prints both tables;
``--quick`` writes ``finetune_synthetic_quick.*`` into ``benchmarks/results/quick/`` (git-ignored).
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
from timeclr.benchmarks.harness import (REPO, finish_metadata, mean_std, print_meta, print_table, results_dir,
                                        run_metadata, save_figure, write_results)
from timeclr.training.plots import pyplot
from timeclr.files.atomic import write_json
from timeclr.training.checkpoints import load_checkpoint
from timeclr.config import Config, load_config
from timeclr.finetune import finetune
from timeclr.pipelines.loader.clip_source import read_videos
from timeclr.pipelines.loader.video import VideoLoader
from timeclr.training.run import RunDir
from timeclr.synthetic.dataset import chosen_manifests, prepare_synthetic
from timeclr.train import train

SUBSET_SEED = 0
INITS = {"pretrained": "TimeCLR-pretrained (synthetic.yaml)", "random": "random init (same network)"}
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


def differences(saved, wanted, keys) -> list[str]:
    """``["key: A there, B now", ...]`` for each of ``keys`` (dotted paths) on which the saved run's
    config and the one asked for differ, defaults filled in on both sides."""
    return recorded.differences(with_defaults(saved), with_defaults(wanted), keys)


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------


def pretrained_checkpoint(args) -> Path:
    """The pretraining checkpoint: reused when finished with the config's recipe, else trained."""
    cfg = absolute(load_config(args.pretrain_config, [f"out_dir={args.pretrain_dir}"]))
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


def labelled_manifest(manifest, fraction: float) -> str:
    """The manifest of a class-balanced ``fraction`` of ``manifest``'s videos (see the module
    docstring, item 4), written beside it with its class list; ``manifest`` itself at 1."""
    if fraction >= 1:
        return str(manifest)
    import csv
    import shutil

    import numpy as np

    manifest = Path(manifest)
    out = manifest.with_name(f"{manifest.stem}_labels{fraction:g}.csv")
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    chosen = []
    for label in sorted({r["label"] for r in rows}, key=int):
        members = [r for r in rows if r["label"] == label]
        k = max(1, round(fraction * len(members)))
        picks = np.random.default_rng([SUBSET_SEED, int(label)]).permutation(len(members))[:k]
        chosen += [members[i] for i in sorted(picks.tolist())]
    repeated = [chosen[i % len(chosen)] for i in range(len(rows))]  # the full length: the same steps per epoch
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(repeated)
    shutil.copyfile(manifest.with_suffix(".classes.txt"), out.with_suffix(".classes.txt"))
    return str(out)


def run_dir(args, init, seed, epochs, default_epochs, fraction=1.0):
    return Path(args.out_root) / (f"{init}-seed{seed}" + ("" if fraction >= 1 else f"-l{100 * fraction:g}")
                                  + ("" if epochs == default_epochs else f"-e{epochs}"))


def run_one(args, init, seed, epochs, checkpoint, default_epochs, fraction=1.0, manifest=None):
    """Fine-tune (or reuse / resume) one run and test it; returns its row."""
    out_dir = run_dir(args, init, seed, epochs, default_epochs, fraction)
    checkpoint = str(checkpoint).format(seed=seed)
    extra = [f"data.manifest={manifest}"] if manifest else []
    cfg = absolute(load_config(args.config, [f"out_dir={out_dir}", f"train.seed={seed}", f"data.seed={seed}",
                                             f"train.epochs={epochs}", *extra, *args.set,
                                             f"checkpoint={checkpoint if init == 'pretrained' else 'random'}"]))
    row = dict(kind="run", init=init, seed=seed, epochs=epochs, labels=fraction,
               out_dir=os.path.relpath(out_dir, REPO))
    files = RunDir(out_dir)
    saved, results_json = Path(files.config), Path(files.finetune_results)
    if saved.exists():
        diff = differences(OmegaConf.load(saved), cfg, FINETUNE_KEYS)
        if diff:
            raise SystemExit(f"finetune_synthetic: {out_dir} holds a run with another config:\n" + "\n".join(diff) +
                             "\ndelete the folder (or use --out-root) to start it afresh")
        if results_json.exists():
            done = json.loads(results_json.read_text())
            print(f"[{init} seed {seed}] done before: {results_json}", flush=True)
            return finish(row, done, out_dir, status="reused")
    resumed = Path(files.checkpoint).exists()
    load_start = os.getloadavg()[0]
    print(f"\n[{init} seed {seed}] fine-tuning {epochs} epochs in {out_dir} (load {load_start:.2f})", flush=True)
    t0 = time.perf_counter()
    results = finetune(cfg)
    results["seconds"] = round(time.perf_counter() - t0, 1)  # training and test, this invocation
    results["load_start"], results["load_end"] = round(load_start, 2), round(os.getloadavg()[0], 2)
    results["resumed"] = resumed
    write_json(results_json, results)
    gc.collect()  # the run's DALI pipelines and their threads
    return finish(row, results, out_dir, status="resumed" if resumed else "ok")


@functools.cache
def group_names() -> dict:
    """The pretraining config's class groups (``eval.groups`` of synthetic.yaml), read once."""
    return OmegaConf.to_container(load_config(str(REPO / "pipelines" / "synthetic.yaml")).eval.groups)


def group_top1(per_class: dict) -> dict:
    """``{top1_<group>: %}`` from a finetune.json's per-class accuracies: the test split is
    class-balanced, so a group's top-1 is the mean of its classes'."""
    return {f"top1_{g}": statistics.fmean(per_class[n] for n in names) for g, names in group_names().items()}


def finish(row, done, out_dir, status):
    metrics = [json.loads(line) for line in open(RunDir(out_dir).metrics)]
    last_epoch = [m["loss"] for m in metrics if m["epoch"] == metrics[-1]["epoch"]]
    row.update({k: done[k] for k, _ in METRICS})
    row.update(group_top1(done["per_class"]))
    row.update(status=status + ("+resumed" if status == "reused" and done.get("resumed") else ""),
               seconds=done.get("seconds"), test_seconds=done.get("test_seconds"),
               clips_per_s=statistics.median(m["clips_per_s"] for m in metrics),
               final_loss=statistics.fmean(last_epoch), load_start=done.get("load_start"),
               load_end=done.get("load_end"))
    return row


def summarise(rows):
    """Mean, sample std and 95 % interval over the seeds, one row per (labels, budget, init)."""
    out = []
    for fraction in dict.fromkeys(r["labels"] for r in rows):
        for epochs in dict.fromkeys(r["epochs"] for r in rows):
            for init in INITS:
                runs = [r for r in rows if r["init"] == init and r["epochs"] == epochs and r["labels"] == fraction]
                if not runs:
                    continue
                out.append(dict(kind="summary", init=init, seed="", epochs=epochs, labels=fraction, n=len(runs),
                                status="", **mean_std(runs, [k for k, _ in METRICS] + group_keys()
                                                      + ["seconds", "clips_per_s", "final_loss"])))
    return out


# ---------------------------------------------------------------------------------------------
# metadata, report
# ---------------------------------------------------------------------------------------------


def metadata(args, cfg, checkpoint, load_start, t_start):
    view = cfg.data.views[cfg.finetune.view]
    ft = cfg.finetune
    meta = run_metadata({
        "config": args.config,
        "pretrained checkpoint": str(checkpoint) if "{seed}" in str(checkpoint) else os.path.relpath(checkpoint, REPO),
        "labels": ", ".join(f"{f:.0%}" for f in args.label_fractions) + f" of the train split (class-balanced, "
                  f"subset seed {SUBSET_SEED}, repeated to the full length: the same steps)",
        "budget": f"{' or '.join(map(str, args.epochs))} epochs x {cfg.data.batch_size} clips/batch, "
                  f"{cfg.model.backbone} backbone, {cfg.train.optimizer} lr {cfg.train.lr:g} "
                  f"(backbone x{ft.backbone_lr:g}, layer decay {ft.layer_decay:g}), dropout {ft.dropout:g}, "
                  f"label smoothing {ft.label_smoothing:g}",
        "train view": f"{view.kind} {view.frames} frames, random resized crop {view.crop_size} scale "
                      f"{list(view.scale)}, flip {view.flip_prob:g}",
        "test": f"{ft.test_clips} clips x {ft.test_crops} crops, softmax averaged, synthetic test split",
        "seeds": ", ".join(map(str, range(args.seeds))),
    }, cuda=torch.cuda.is_available(), libs=("torch", "DALI"), load=(load_start, None, 0))
    return finish_metadata(meta, t_start)


def group_keys() -> list:
    return [f"top1_{g}" for g in group_names()]


def columns() -> list:
    """The CSV's columns: each metric (overall, then per group) with its std and 95 % interval."""
    return (["kind", "init", "seed", "labels", "epochs", "n", "status"]
            + [c for k in [k for k, _ in METRICS] + group_keys() for c in (k, f"{k}_std", f"{k}_ci95")]
            + ["seconds", "seconds_std", "clips_per_s", "clips_per_s_std", "final_loss", "final_loss_std",
               "test_seconds", "load_start", "load_end", "out_dir"])


def report(rows, summary, meta, args):
    print()
    print_meta(meta)
    print("\nruns:")
    print_table(["init", "seed", "labels", "epochs", "status", *[h for _, h in METRICS], "s", "clips/s", "last loss"],
                [[r["init"], str(r["seed"]), f"{r['labels']:.0%}", str(r["epochs"]), r["status"],
                  *[f"{r[k]:.1f}" for k, _ in METRICS],
                  "-" if r.get("seconds") is None else f"{r['seconds']:.0f}", f"{r['clips_per_s']:.0f}",
                  f"{r['final_loss']:.3f}"] for r in rows])
    print("\nmean ± std [95 % interval] over seeds (%, synthetic test split):")
    print_table(["init", "labels", "epochs", "n", *[h for _, h in METRICS], "s per run"],
                [[s["init"], f"{s['labels']:.0%}", str(s["epochs"]), str(s["n"]),
                  *[f"{s[k]:.1f} ± {s[f'{k}_std']:.1f} [±{s[f'{k}_ci95']:.1f}]" for k, _ in METRICS],
                  "-" if s.get("seconds") is None else f"{s['seconds']:.0f}"] for s in summary])
    groups = list(group_names())
    print("\ntop-1 per class group, mean [95 % interval] over seeds (%):")
    print_table(["init", "labels", "epochs", *groups],
                [[s["init"], f"{s['labels']:.0%}", str(s["epochs"]),
                  *[f"{s[f'top1_{g}']:.1f} [±{s[f'top1_{g}_ci95']:.1f}]" for g in groups]] for s in summary])
    stem = results_dir(args.out, args.quick) / ("finetune_synthetic" + (f"_{args.tag}" if args.tag else ""))
    csv_path, json_path = write_results(stem, meta, columns(), rows + summary)
    plot(rows, summary, meta, f"{stem}.png")
    print(f"\nwrote {csv_path}, {json_path} and {stem}.png")


def plot(rows, summary, meta, path):
    """Grouped bars, one group per metric, one bar per init: mean ± std, the seeds as dots."""
    plt = pyplot()
    settings = list(dict.fromkeys((s["labels"], s["epochs"]) for s in summary))
    shades = {"pretrained": ["#fddbc7", "#f4a582", "#d6604d", "#b2182b"],
              "random": ["#f0f0f0", "#d9d9d9", "#a6a6a6", "#737373"]}
    width = 0.8 / max(1, len(summary))
    fig, ax = plt.subplots(figsize=(11, 4.8))
    for i, s in enumerate(summary):
        xs = [g + (i - (len(summary) - 1) / 2) * width for g in range(len(METRICS))]
        shade = shades[s["init"]][min(settings.index((s["labels"], s["epochs"])) + 4 - len(settings), 3)]
        ax.bar(xs, [s[k] for k, _ in METRICS], width * 0.9, yerr=[s[f"{k}_std"] for k, _ in METRICS], capsize=3,
               color=shade, edgecolor="0.3", lw=0.3,
               label=f"{INITS[s['init']]}, {s['labels']:.0%} labels, {s['epochs']} epochs, n={s['n']}")
        for x, (k, _) in zip(xs, METRICS):
            pts = [r[k] for r in rows if r["init"] == s["init"] and r["epochs"] == s["epochs"]
                   and r["labels"] == s["labels"]]
            ax.plot([x] * len(pts), pts, "k.", ms=4)
            ax.text(x, s[k] + s[f"{k}_std"] + 0.8, f"{s[k]:.1f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(METRICS)), [h for _, h in METRICS])
    ax.set_ylabel("% (synthetic test split, 8 classes)")
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.axhline(100 / 8, color="0.5", lw=0.8, ls=":")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    save_figure(fig, "Fine-tuning on the synthetic motion set", {k: v for k, v in meta.items() if k != "command"},
                path, fontsize=6.5)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="pipelines/synthetic_finetune.yaml", help="the fine-tuning config")
    parser.add_argument("--pretrain-config", default="pipelines/synthetic.yaml")
    parser.add_argument("--pretrain-dir", default="runs/synthetic", help="where the pretraining run is (or goes)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 for each init")
    parser.add_argument("--epochs", type=int, nargs="+", default=None,
                        help="fine-tuning budgets in epochs (default: half the config's, and the config's)")
    parser.add_argument("--label-fractions", type=float, nargs="+", default=[1.0, 0.1, 0.01],
                        help="fractions of the train labels fine-tuning sees (class-balanced; default 1 0.1 0.01)")
    parser.add_argument("--pretrained-pattern", default=None,
                        help="checkpoint of seed k's pretraining, '{seed}' standing for k (e.g. "
                        "runs/ablation/timeclr-seed{seed}/checkpoint.pt); default: one pretraining run for all seeds")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides of the fine-tuning config, e.g. model.backbone=small_wide for checkpoints "
                        "of pipelines/synthetic_wide.yaml (the random init gets them too)")
    parser.add_argument("--out-root", default="runs/finetune_synthetic")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 3 epochs, all labels, into "
                        "benchmarks/results/quick/ (git-ignored)")
    parser.add_argument("--out", help="output folder (default benchmarks/results/, --quick: benchmarks/results/quick/)")
    parser.add_argument("--tag", default="", help="suffix of the result files (default: 'quick' with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.label_fractions, args.tag = 1, args.epochs or [3], [1.0], args.tag or "quick"
    t0, load_start = time.perf_counter(), os.getloadavg()[0]
    cfg = load_config(args.config, args.set)
    args.epochs = args.epochs or [cfg.train.epochs // 2, cfg.train.epochs]
    if args.pretrained_pattern:
        checkpoint = args.pretrained_pattern
        missing = [checkpoint.format(seed=k) for k in range(args.seeds) if not Path(checkpoint.format(seed=k)).exists()]
        if missing:
            raise SystemExit(f"finetune_synthetic: no pretraining checkpoint {missing[0]} "
                             "(run benchmarks/experiments/ablation.py)")
    else:
        checkpoint = pretrained_checkpoint(args)
    full = absolute(load_config(args.config, args.set))
    full.data.manifest, full.eval.test_manifest = chosen_manifests(full, *prepare_synthetic(full, rank=0))
    rows = []
    for fraction in args.label_fractions:
        manifest = labelled_manifest(full.data.manifest, fraction)
        for epochs in (args.epochs if fraction >= 1 else [cfg.train.epochs]):
            for seed in range(args.seeds):
                for init in INITS:
                    rows.append(run_one(args, init, seed, epochs, checkpoint, cfg.train.epochs, fraction, manifest))
    summary = summarise(rows)
    report(rows, summary, metadata(args, cfg, checkpoint, load_start, t0), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
