"""Ablation: which views does video-level contrastive learning need? Four view setups, one budget.

What is trained
---------------
The embedded synthetic benchmark (``pipelines/synthetic.yaml``: 8 classes defined by motion over
time, a small 3D CNN, NT-Xent over its views) is pretrained four ways. Everything but the views is
the config's: epochs, batch, model, optimizer, schedule, temperature, and each view's crop and
augmentation (copied from the loaded config; only ``kind``, ``frames`` and ``strides`` change):

    interval   two interval views: 8 consecutive-ish frames each, strides [1, 2, 3] drawn per
               sample, independent starts (the clip-level baseline, as in CVRL)
    segment    two segment views: one frame from each of 8 segments each (global context, as in VCLR)
    timeclr    one segment view and one interval view: synthetic.yaml as it is (TimeCLR)
    timeclr4   two segment and two interval views in one multi-positive NT-Xent (V = 4)

each with ``--seeds`` seeds (seed k sets both ``train.seed`` and ``data.seed``: initialisation,
shuffling, frame positions, augmentation).

Evaluation: one protocol for every variant
------------------------------------------
Every metric is also reported per class group (``eval.groups``: kNN and linear top-1 on the
group's test videos), with each seed's margin over the untrained network of the same seed, and
the summaries carry the 95 % t interval of the mean. ``--split val`` scores the same checkpoints
on the validation split carved from the train videos (``eval.val_fraction``), where a choice
between setups is made; the test split is for the final table.

``timeclr.train`` evaluates with ``eval.view``, an index into ``data.views``: the interval
variant, which has no segment view, would then be evaluated on an interval clip, the others on a
segment clip. So the runs here train with ``train.evaluate=false`` and are evaluated afterwards,
from their final checkpoint, with the same eval data config for all: the library's
``eval_data_config`` (deterministic, no augmentation, resize the short side to
``data.short_side``, centre crop) applied to a config whose only view is a segment view of 8
frames (the config's first segment view, i.e. synthetic.yaml's view 0). For the segment and
timeclr variants that is exactly what ``timeclr.train`` itself would have done. Metrics
(``timeclr.metrics``): kNN top-1 (cosine, k = ``eval.knn_k``), linear-probe top-1, retrieval R@k,
fitted on the train split and scored on the test split, on frozen backbone features. The
random-init baseline (the same network untrained, ``timeclr.run.random_model``: seeded by
``train.seed + 1``, so the same for every variant of a seed) is evaluated once per seed.

That protocol (a segment clip spanning the whole video) is the one the library uses, but it is
the view the segment variant trains on and the interval variant never sees. ``--eval-view
interval`` re-evaluates every trained run (no retraining) with the other kind, an interval view
of 8 consecutive frames from the middle of the video, into ``eval_interval.json`` and
``ablation_eval-interval.csv/png``: how much of a difference is the protocol's.

Runs and resuming
-----------------
Each run lives in ``runs/ablation/<variant>-seed<k>`` (``...-e<N>`` when ``--epochs`` differs
from the config's), the baseline in ``runs/ablation/random_init-seed<k>``. A run whose
``eval.json`` exists (written by this script, with the same eval protocol) is not redone; an
interrupted one resumes from its last checkpoint (``timeclr.train`` does that), so the script
can be stopped and rerun. A run folder whose saved config differs from the one asked for (views,
seeds, epochs, model, optimizer) is an error, never silently mixed.

How to run
----------
    python benchmarks/ablation.py                      # 3 variants x 3 seeds x 80 epochs (~30 min on 2 idle cores)
    python benchmarks/ablation.py --quick              # 10 epochs, 1 seed: a smoke run of a few minutes
    python benchmarks/ablation.py --epochs 40          # a smaller budget (its own run folders)
    python benchmarks/ablation.py --variants timeclr interval --seeds 2
    python benchmarks/ablation.py --eval-view interval # the same runs, evaluated on interval clips

The training loop is CPU-bound and shares the machine with everything else on it: before the
first run the script waits (up to ``--max-wait`` s) for the 1-minute load average to drop below
``--max-load``; the loads and each run's training throughput (clips/s, a contention indicator:
~120-140 on 2 idle EPYC cores) are recorded in the outputs.

Writes ``benchmarks/results/ablation[_<tag>].csv`` (metadata as '#' lines, one row per run,
then one summary row per variant and one for random init) and ``.png`` (bars: mean ± std over
seeds, dots: the seeds), and prints both tables.
"""
import argparse
import copy
import datetime
import gc
import json
import os
import shlex
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
from omegaconf import OmegaConf

from runinfo import device_name, git_rev, mean_std, print_table, save_figure, wait_for_quiet, write_csv
from timeclr.atomic import write_json
from timeclr.checkpoints import load_checkpoint
from timeclr.config import Config, ViewConfig, load_config
from timeclr.features import evaluate_model
from timeclr.models import build_model
from timeclr.recorded import differences
from timeclr.run import CHECKPOINT, random_model
from timeclr.synthetic import prepare_synthetic
from timeclr.train import train

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {
    "interval": "2 interval views (CVRL-style clips)",
    "segment": "2 segment views (VCLR-style global)",
    "timeclr": "segment + interval (TimeCLR)",
    "timeclr4": "2 segment + 2 interval (V = 4)",
}
FRAMES = 8
INTERVAL_STRIDES = [1, 2, 3]
METRICS = ["knn_top1", "linear_top1", "retrieval_r1", "retrieval_r5", "retrieval_r10", "retrieval_r20"]
SHOWN = [("knn_top1", "kNN top-1"), ("linear_top1", "linear top-1"), ("retrieval_r1", "R@1")]


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------


def base_config(path):
    """The experiment config, paths made absolute, the synthetic data generated if absent."""
    cfg = load_config(path)
    if not os.path.isabs(cfg.data.root):
        cfg.data.root = str(REPO / cfg.data.root)
    if cfg.synthetic.enabled:
        prepare_synthetic(cfg, rank=0)  # sets data.manifest and eval.test_manifest
    if len(cfg.data.views) != 2:
        raise SystemExit(f"ablation: {path} has {len(cfg.data.views)} views; the ablation compares 2-view setups")
    return cfg


def variant_views(cfg, variant):
    """The two views of ``variant``: the config's views with only kind / frames / strides changed."""
    views = [OmegaConf.to_container(v) for v in cfg.data.views]
    if variant == "interval":
        for v in views:
            v.update(kind="interval", frames=FRAMES, strides=list(INTERVAL_STRIDES))
    elif variant == "segment":
        for v in views:
            v.update(kind="segment", frames=FRAMES)
    elif variant in ("timeclr", "timeclr4"):
        if sorted(v["kind"] for v in views) != ["interval", "segment"]:
            raise SystemExit(f"ablation: the config's views are {[v['kind'] for v in views]}, "
                             "not TimeCLR's segment + interval")
        if variant == "timeclr4":  # one multi-positive NT-Xent over all four: 3 positives per view
            views = [copy.deepcopy(v) for v in views + views]
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return views


def eval_view(cfg, kind="segment"):
    """The one view every variant is evaluated with: the config's first view of ``kind`` (its crop
    size is the one that matters in eval mode) as a ``kind`` view of FRAMES frames; an interval
    eval view takes the first of INTERVAL_STRIDES (1: 8 consecutive frames, centred)."""
    views = [OmegaConf.to_container(v) for v in cfg.data.views]
    view = next((v for v in views if v["kind"] == kind), views[0])
    if kind == "interval":
        return {**view, "kind": "interval", "frames": FRAMES, "strides": list(INTERVAL_STRIDES)}
    return {**view, "kind": "segment", "frames": FRAMES}


def eval_file(kind, split="test"):
    """The primary protocol (segment view, test split) writes eval.json, the others
    eval_interval.json, eval_val.json, eval_interval_val.json."""
    parts = [p for p in ("eval", "" if kind == "segment" else kind, "" if split == "test" else split) if p]
    return "_".join(parts) + ".json"


def protocol(cfg, kind="segment", split="test"):
    """What the evaluation depends on, stored in each eval.json: a changed protocol re-evaluates."""
    v = eval_view(cfg, kind)
    keys = ("kind", "frames", "crop_size") + (("strides",) if kind == "interval" else ())
    return {"view": {k: v[k] for k in keys}, "short_side": cfg.data.short_side,
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
    """``cfg`` with the common eval view as its only view (eval.view = 0), scored on ``split``,
    no random-init baseline."""
    ecfg = copy.deepcopy(cfg)
    ecfg.data.views = [ViewConfig(**eval_view(cfg, kind))]
    ecfg.eval.view = 0
    ecfg.eval.split = split
    ecfg.eval.random_init = False
    ecfg.checkpoint = str(checkpoint)
    return ecfg


def check_same_run(cfg):
    """Refuse to resume a run folder that was made with another config."""
    saved_path = Path(cfg.out_dir) / "config.yaml"
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


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------


def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_trained(cfg, path):
    """The trained model of a run's checkpoint, loaded directly: ``check_same_run`` has already
    compared the run's config with the one asked for."""
    ckpt = load_checkpoint(path, map_location=device())  # data only: a shared run folder's file runs no code
    model = build_model(cfg.model).to(device())
    model.load_state_dict(ckpt["model"])
    return model


def read_metrics(out_dir):
    """Median training clips/s and the mean loss of the last epoch, from the run's metrics.jsonl."""
    path = Path(out_dir) / "metrics.jsonl"
    if not path.exists():
        return None, None
    rows = [r for r in map(json.loads, open(path)) if "loss" in r]  # not the online kNN's rows
    if not rows:
        return None, None
    last = [r["loss"] for r in rows if r["epoch"] == rows[-1]["epoch"]] or [rows[-1]["loss"]]
    return statistics.median(r["clips_per_s"] for r in rows), statistics.fmean(last)


def run_variant(base, variant, seed, epochs, args):
    """Train (or resume) one run, evaluate it with the common protocol; returns its row."""
    out_dir = run_dir(args.out_root, variant, seed, epochs, base.train.epochs)
    cfg = variant_config(base, variant, seed, epochs, out_dir)
    kind, split = args.eval_view, args.split
    eval_json = out_dir / eval_file(kind, split)
    row = dict(kind="run", variant=variant, seed=seed, epochs=epochs, out_dir=os.path.relpath(out_dir, REPO))
    check_same_run(cfg)
    if eval_json.exists():
        done = json.load(open(eval_json))
        if done.get("protocol") == protocol(cfg, kind, split) and "pretrained" in done:
            print(f"[{variant} seed {seed}] done before: {eval_json}", flush=True)
            return finish_row(row, done, status="reused")
    primary = out_dir / eval_file("segment")
    if (kind, split) != ("segment", "test") and primary.exists():  # trained already: only this evaluation is missing
        done = {k: v for k, v in json.load(open(primary)).items() if k not in ("pretrained", "protocol")}
        ecfg = eval_config(cfg, out_dir / CHECKPOINT, kind, split)
        t0 = time.perf_counter()
        done.update(pretrained=evaluate_model(ecfg, load_trained(ecfg, ecfg.checkpoint), device()),
                    protocol=protocol(cfg, kind, split), eval_seconds=round(time.perf_counter() - t0, 1))
        write_json(eval_json, done)
        print(f"[{variant} seed {seed}] {kind} eval: kNN {done['pretrained']['knn_top1']:.1f}  "
              f"linear {done['pretrained']['linear_top1']:.1f}", flush=True)
        return finish_row(row, done, status="reused+evaluated")
    resumed = (out_dir / CHECKPOINT).exists()  # then train_s is only this invocation's share
    load_start = os.getloadavg()[0]
    print(f"\n[{variant} seed {seed}] training {epochs} epochs in {out_dir} (load {load_start:.2f}); "
          f"views: {[(v['kind'], v['frames']) for v in cfg.data.views]}", flush=True)
    t0 = time.perf_counter()
    train(cfg)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ecfg = eval_config(cfg, out_dir / CHECKPOINT, kind, split)
    metrics = evaluate_model(ecfg, load_trained(ecfg, ecfg.checkpoint), device())
    eval_s = time.perf_counter() - t0
    clips_per_s, final_loss = read_metrics(out_dir)
    done = {"pretrained": metrics, "protocol": protocol(cfg, kind, split), "train_seconds": round(train_s, 1),
            "eval_seconds": round(eval_s, 1), "clips_per_s": clips_per_s, "final_loss": final_loss,
            "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
            "views": OmegaConf.to_container(cfg.data.views)}
    done["resumed"] = resumed
    write_json(eval_json, done)
    print(f"[{variant} seed {seed}] kNN {metrics['knn_top1']:.1f}  linear {metrics['linear_top1']:.1f}  "
          f"R@1 {metrics['retrieval_r1']:.1f}  ({train_s:.0f} s training, {clips_per_s:.0f} clips/s median, "
          f"{eval_s:.0f} s eval)", flush=True)
    gc.collect()  # the run's DALI pipelines and their threads
    return finish_row(row, done, status="resumed" if resumed else "ok")


def run_random_init(base, seed, args):
    """The untrained network of seed ``seed``, evaluated with the common protocol (once per seed)."""
    out_dir = Path(args.out_root) / f"random_init-seed{seed}"
    cfg = copy.deepcopy(base)
    cfg.train.seed = cfg.data.seed = seed
    cfg.out_dir = str(out_dir)
    kind, split = args.eval_view, args.split
    eval_json = out_dir / eval_file(kind, split)
    row = dict(kind="run", variant="random_init", seed=seed, epochs=0, out_dir=os.path.relpath(out_dir, REPO))
    if eval_json.exists():
        done = json.load(open(eval_json))
        if done.get("protocol") == protocol(cfg, kind, split) and "pretrained" in done:
            return finish_row(row, done, status="reused")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ecfg = eval_config(cfg, kind=kind, split=split)
    metrics = evaluate_model(ecfg, random_model(ecfg, device()), device())
    done = {"pretrained": metrics, "protocol": protocol(cfg, kind, split),
            "eval_seconds": round(time.perf_counter() - t0, 1)}
    write_json(eval_json, done)
    print(f"[random init seed {seed}] kNN {metrics['knn_top1']:.1f}  linear {metrics['linear_top1']:.1f}  "
          f"R@1 {metrics['retrieval_r1']:.1f}", flush=True)
    return finish_row(row, done, status="ok")


def finish_row(row, done, status):
    """The run's row; status 'ok', 'resumed' (train_s is then only the last invocation's share) or
    'reused' (eval.json found; '+resumed' if that run was resumed)."""
    if status == "reused" and done.get("resumed"):
        status = "reused+resumed"
    row.update(done["pretrained"])
    row.update(status=status, train_s=done.get("train_seconds"), clips_per_s=done.get("clips_per_s"),
               final_loss=done.get("final_loss"), load_start=done.get("load_start"), load_end=done.get("load_end"))
    return row


def group_metrics(rows) -> list:
    """The per-group keys the runs have (``knn_top1_<group>``, ``linear_top1_<group>``), in order."""
    keys = dict.fromkeys(k for r in rows for k in r if k.startswith(("knn_top1_", "linear_top1_"))
                         and not k.endswith(("_margin", "_std", "_ci95")))
    return sorted(keys, key=lambda k: (not k.startswith("knn"), k))


def groups_of(rows) -> list:
    return [k[len("knn_top1_"):] for k in group_metrics(rows) if k.startswith("knn_top1_")]


def summarise(rows):
    """One summary row per variant (and random init): mean, sample std and the 95 % t interval
    over its seeds, and each group's margin over random init (the mean of the per-seed margins:
    random init is seeded like the variant)."""
    out = []
    extra = group_metrics(rows)
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = [r for r in rows if r["variant"] == variant and r.get("knn_top1") is not None]
        if not runs:
            continue
        for r in runs:  # margins over the untrained network of the same seed
            base = next((b for b in rows if b["variant"] == "random_init" and b["seed"] == r["seed"]), None)
            if base is not None and variant != "random_init":
                for k in ["knn_top1"] + [g for g in extra if g.startswith("knn_top1_")]:
                    if r.get(k) is not None and base.get(k) is not None:
                        r[f"{k}_margin"] = r[k] - base[k]
        margins = [k for k in dict.fromkeys(k for r in runs for k in r if k.endswith("_margin"))]
        out.append(dict(kind="summary", variant=variant, seed="", epochs=runs[0]["epochs"], n=len(runs), status="",
                        **mean_std(runs, METRICS + extra + margins + ["train_s", "clips_per_s", "final_loss"])))
    return out


# ---------------------------------------------------------------------------------------------
# machine load, metadata
# ---------------------------------------------------------------------------------------------


def metadata(args, base, epochs, load):
    import nvidia.dali

    ev = eval_view(base, args.eval_view)
    return {
        "device": device_name(torch.cuda.is_available()),
        "torch": torch.__version__,
        "DALI": nvidia.dali.__version__,
        "git": git_rev(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": os.path.relpath(args.config, REPO) if os.path.isabs(args.config) else args.config,
        "budget": f"{epochs} epochs x {base.data.batch_size} clips/batch, {base.model.backbone} backbone, "
                  f"{base.train.optimizer} lr {base.train.lr:g}, tau {base.train.temperature:g}",
        "seeds": ", ".join(map(str, args.seed_list)),
        "eval": f"every variant: {ev['kind']} view {ev['frames']} frames"
                + (f" stride {ev['strides'][0]} centred" if ev["kind"] == "interval" else "") + f", short side {base.data.short_side}, "
                f"centre crop {ev['crop_size']}, kNN k={base.eval.knn_k}, frozen backbone features",
        "load avg (1 min) at start": f"{load[0]:.2f}" + (f", {load[1]:.2f} after waiting {load[2]} s" if load[2] else ""),
        "command": "python " + shlex.join(sys.argv),
    }


# ---------------------------------------------------------------------------------------------
# report: tables, CSV, plot
# ---------------------------------------------------------------------------------------------

def columns(rows) -> list:
    """The CSV's columns: each metric (overall, then per group, then margins over random init)
    with its std and 95 % interval, then the run's bookkeeping."""
    metrics = METRICS + group_metrics(rows)
    margins = [k for k in dict.fromkeys(k for r in rows for k in r if k.endswith("_margin") and not k.endswith(
        ("_std", "_ci95")))]
    return (["kind", "variant", "seed", "epochs", "n", "status"]
            + [c for m in metrics + margins for c in (m, f"{m}_std", f"{m}_ci95")]
            + ["train_s", "train_s_std", "clips_per_s", "clips_per_s_std", "final_loss", "final_loss_std",
               "load_start", "load_end", "out_dir"])


def _f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def report(rows, summary, meta, args):
    print()
    for k, v in meta.items():
        print(f"# {k}: {v}")
    print("\nruns:")
    print_table(["variant", "seed", "epochs", "status", *[h for _, h in SHOWN], "train s", "clips/s", "last loss",
                 "load"],
                [[r["variant"], str(r["seed"]), str(r["epochs"]), r["status"], *[_f(r.get(k)) for k, _ in SHOWN],
                  _f(r.get("train_s"), "{:.0f}"), _f(r.get("clips_per_s"), "{:.0f}"), _f(r.get("final_loss"), "{:.3f}"),
                  "-" if r.get("load_start") is None else f"{r['load_start']:.2f}/{r['load_end']:.2f}"]
                 for r in rows])
    print("\nmean ± std over seeds (%), [95 % interval of the mean]:")
    print_table(["variant", "n", *[h for _, h in SHOWN]],
                [[s["variant"], str(s["n"]), *[f"{s[k]:.1f} ± {s[f'{k}_std']:.1f} [±{s[f'{k}_ci95']:.1f}]"
                                               for k, _ in SHOWN]] for s in summary])
    groups = groups_of(rows)
    if groups:
        print("\nkNN top-1 per class group, mean [95 % interval] (margin over random init of the same seeds):")
        print_table(["variant", *groups],
                    [[s["variant"], *[f"{s[f'knn_top1_{g}']:.1f} [±{s[f'knn_top1_{g}_ci95']:.1f}]"
                                      + (f" ({s[f'knn_top1_{g}_margin']:+.1f})" if f"knn_top1_{g}_margin" in s else "")
                                      for g in groups]] for s in summary])

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("ablation" + (f"_{args.tag}" if args.tag else ""))
    write_csv(f"{stem}.csv", meta, columns(rows + summary), rows + summary)
    plot(rows, summary, meta, f"{stem}.png")
    print(f"\nwrote {stem}.csv and {stem}.png")


def plot(rows, summary, meta, path):
    """Grouped bars (one group per metric, one bar per variant): mean ± std, the seeds as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["variant"] for s in summary]
    colors = {"interval": "C0", "segment": "C1", "timeclr": "C3", "timeclr4": "C4", "random_init": "0.6"}
    width = 0.8 / max(1, len(names))
    groups = groups_of(rows)
    fig, axes = plt.subplots(1, 2 if groups else 1, figsize=(15 if groups else 8.5, 5), squeeze=False)
    ax = axes[0][0]
    for i, s in enumerate(summary):
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(SHOWN))]
        label = VARIANTS.get(s["variant"], "random init (untrained)") + f", n={s['n']}"
        ax.bar(xs, [s[k] for k, _ in SHOWN], width * 0.9, yerr=[s[f"{k}_std"] for k, _ in SHOWN], capsize=3,
               color=colors.get(s["variant"], f"C{i}"), alpha=0.85, label=label)
        for x, (k, _) in zip(xs, SHOWN):
            pts = [r[k] for r in rows if r["variant"] == s["variant"] and r.get(k) is not None]
            ax.plot([x] * len(pts), pts, "k.", ms=4)
        for x, (k, _) in zip(xs, SHOWN):
            ax.text(x, s[k] + s[f"{k}_std"] + 0.8, f"{s[k]:.1f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(SHOWN)), [h for _, h in SHOWN])
    ax.set_ylabel("% (test split, frozen features)")
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.axhline(100 / 8, color="0.5", lw=0.8, ls=":")
    ax.text(len(SHOWN) - 0.5, 100 / 8 + 1, "chance", fontsize=7, color="0.4", ha="right")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", ncol=2)  # above the bars (the axis runs to 122 %)
    if groups:
        ax = axes[0][1]
        for i, s in enumerate(summary):
            xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
            keys = [f"knn_top1_{g}" for g in groups]
            ax.bar(xs, [s[k] for k in keys], width * 0.9, yerr=[s[f"{k}_ci95"] for k in keys], capsize=3,
                   color=colors.get(s["variant"], f"C{i}"), alpha=0.85)
            for x, k in zip(xs, keys):
                pts = [r[k] for r in rows if r["variant"] == s["variant"] and r.get(k) is not None]
                ax.plot([x] * len(pts), pts, "k.", ms=4)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel("kNN top-1 % per class group (bars: 95 % interval of the mean)")
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, "TimeCLR view ablation, synthetic motion set", meta, path)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "pipelines" / "synthetic.yaml"))
    p.add_argument("--epochs", type=int, help="training epochs of every run (default: the config's; --quick: 10)")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 per variant (default 3; --quick: 1)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--quick", action="store_true", help="10 epochs, 1 seed, outputs tagged 'quick': a smoke run")
    p.add_argument("--eval-view", choices=("segment", "interval"), default="segment",
                   help="the eval protocol's view (default segment: eval.json). 'interval' (8 consecutive frames, "
                   "centred) is a secondary protocol: trained runs are only re-evaluated (eval_interval.json), "
                   "outputs tagged 'eval-interval'")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="score on the test split (the final tables) or on the validation split carved from the "
                   "train videos (eval.val_fraction; every choice is made there): trained runs are re-evaluated, "
                   "outputs tagged 'val'")
    p.add_argument("--no-random-init", action="store_true", help="skip the random-init baseline")
    p.add_argument("--out-root", default=str(REPO / "runs" / "ablation"), help="where the run folders go")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="where the CSV and PNG go")
    p.add_argument("--tag", help="suffix of the output file names (default: 'quick' with --quick, else none)")
    p.add_argument("--max-load", type=float, default=0.7, help="wait while the 1-min load average is above this")
    p.add_argument("--max-wait", type=int, default=600, help="... but at most this many seconds (0: never wait)")
    args = p.parse_args()
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be >= 1")
    if args.seeds is not None and args.seeds < 1:
        p.error("--seeds must be >= 1")
    args.seed_list = list(range(args.seeds or (1 if args.quick else 3)))
    if args.tag is None:
        args.tag = "_".join(t for t in ("quick" if args.quick else "",
                                         "eval-interval" if args.eval_view == "interval" else "",
                                         "val" if args.split == "val" else "") if t)
    return args


def main():
    args = parse_args()
    base = base_config(args.config)
    epochs = args.epochs or (10 if args.quick else base.train.epochs)
    load = wait_for_quiet(args.max_load, args.max_wait)
    meta = metadata(args, base, epochs, load)
    print(f"ablation: {args.variants} x seeds {args.seed_list}, {epochs} epochs each, on {meta['device']}", flush=True)
    rows, t0 = [], time.perf_counter()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a `timeout` / kill still gets a report
    try:
        for seed in args.seed_list:  # seed-major: an interrupted ablation has whole seeds
            if not args.no_random_init:
                rows.append(run_random_init(base, seed, args))
            for variant in args.variants:
                try:
                    rows.append(run_variant(base, variant, seed, epochs, args))
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as e:  # noqa: BLE001 -- one failed run (e.g. a NaN loss) is a result
                    traceback.print_exc()
                    rows.append(dict(kind="run", variant=variant, seed=seed, epochs=epochs,
                                     status=f"failed: {type(e).__name__}: {str(e)[:120]}"))
    except KeyboardInterrupt:
        print("\ninterrupted: reporting the finished runs (rerun the same command to go on)", flush=True)
    order = {v: i for i, v in enumerate(list(args.variants) + ["random_init"])}
    rows.sort(key=lambda r: (order[r["variant"]], r["seed"]))
    meta["load avg (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
    meta["wall time"] = f"{(time.perf_counter() - t0) / 60:.1f} min (runs done before are reused, not timed)"
    meta["command"] = meta.pop("command")  # keep the command last
    report(rows, summarise(rows), meta, args)


if __name__ == "__main__":
    main()
