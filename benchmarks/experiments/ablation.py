"""Ablation: which views does video-level contrastive learning need? View designs, one budget.

What is trained
---------------
The embedded synthetic benchmark (default ``pipelines/synthetic_v1.yaml``: 8 classes defined by slow
motion, a small 3D CNN, NT-Xent over its views; ``--config pipelines/synthetic_v2.yaml``: the v2 set)
is pretrained once per view design. Everything but the views is the config's: epochs, batch,
model, optimizer, schedule, temperature, and each view's crop and augmentation (view i copies the
config's view i, or view i mod V; only the temporal keys kind / frames / strides / start / anchor
change). The designs are config, ``pipelines/view_designs.yaml``:

    interval         two interval clips at independent random places (the clip-level baseline)
    segment          two segment views (global context, as in VCLR)
    timeclr          one segment view and one interval view: the config as it is (TimeCLR)
    interval_s1, timeclr_s1   interval / timeclr with stride-1 interval clips only
    timeclr_overlap  TimeCLR's pair, the interval centred on one of the segment view's frames
    timeclr4         two segment and two interval views in one multi-positive NT-Xent (V = 4)
    cvrl             CVRL's sampler: the second clip's start likelier near the first's
    rho3             ρBYOL's ρ = 3 clips, evenly spaced with one random phase

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
frames (the config's first segment view, i.e. its view 0). For the segment and
timeclr variants that is exactly what ``timeclr.train`` itself would have done. Metrics
(``timeclr.evaluation.metrics``): kNN top-1 (cosine, k = ``eval.knn_k``), linear-probe top-1, retrieval R@k,
fitted on the train split and scored on the test split, on frozen backbone features. The
random-init baseline (the same network untrained, ``timeclr.training.run.random_model``: seeded by
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
    python benchmarks/experiments/ablation.py --variants interval segment timeclr timeclr4  # v1's table: 4 x 3 seeds x 80 epochs
    python benchmarks/experiments/ablation.py --quick              # 10 epochs, 1 seed: a smoke run of a few minutes
    python benchmarks/experiments/ablation.py --epochs 40          # a smaller budget (its own run folders)
    python benchmarks/experiments/ablation.py --variants timeclr interval --seeds 2
    python benchmarks/experiments/ablation.py --eval-view interval # the same runs, evaluated on interval clips
    python benchmarks/experiments/ablation.py --eval-view both     # ... on both clips' features side by side

The training loop is CPU-bound and shares the machine with everything else on it: before the
first run the script waits (up to ``--max-wait`` s) for the 1-minute load average to drop below
``--max-load``; the loads and each run's training throughput (clips/s, a contention indicator:
~120-140 on 2 idle EPYC cores) are recorded in the outputs.

Writes ``benchmarks/results/ablation[_<tag>].csv`` (a plain CSV: one row per run, then one
summary row per variant and one for random init), ``.json`` (the run's metadata) and ``.png``
(bars: mean ± std over seeds, dots: the seeds), and prints both tables; ``--quick`` writes into
``benchmarks/results/quick/`` (git-ignored).

The parts: ``ablation_setups.py`` (each variant's views, the eval protocol, run folders),
this file (the runs: train, evaluate, resume, reuse), ``ablation_report.py`` (summary, tables,
CSV, figure).
"""
import argparse
import copy
import gc
import json
import os
import signal
import statistics
import time
import traceback
from pathlib import Path

import torch
from omegaconf import OmegaConf

from timeclr.files.atomic import write_json
from timeclr.benchmarks.experiments.ablation_report import report, summarise
from timeclr.benchmarks.experiments.ablation_setups import (EVAL_KINDS, VARIANTS, base_config, check_same_run, eval_config,
                                                            clip_metrics, eval_file, eval_views, protocol, run_dir,
                                                            variant_config)
from timeclr.benchmarks.harness import REPO, finish_metadata, results_dir, run_metadata, wait_for_quiet
from timeclr.training.checkpoints import load_checkpoint
from timeclr.evaluation.features import evaluate_model
from timeclr.models import build_model
from timeclr.training.run import RunDir, random_model
from timeclr.train import train


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
    path = Path(RunDir(out_dir).metrics)
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
        ecfg = eval_config(cfg, RunDir(out_dir).checkpoint, kind, split)
        t0 = time.perf_counter()
        done.update(pretrained=clip_metrics(evaluate_model(ecfg, load_trained(ecfg, ecfg.checkpoint), device()), kind),
                    protocol=protocol(cfg, kind, split), eval_seconds=round(time.perf_counter() - t0, 1))
        write_json(eval_json, done)
        print(f"[{variant} seed {seed}] {kind} eval: kNN {done['pretrained']['knn_top1']:.1f}  "
              f"linear {done['pretrained']['linear_top1']:.1f}", flush=True)
        return finish_row(row, done, status="reused+evaluated")
    resumed = Path(RunDir(out_dir).checkpoint).exists()  # then train_s is only this invocation's share
    load_start = os.getloadavg()[0]
    print(f"\n[{variant} seed {seed}] training {epochs} epochs in {out_dir} (load {load_start:.2f}); "
          f"views: {[(v['kind'], v['frames']) for v in cfg.data.views]}", flush=True)
    t0 = time.perf_counter()
    train(cfg)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ecfg = eval_config(cfg, RunDir(out_dir).checkpoint, kind, split)
    metrics = clip_metrics(evaluate_model(ecfg, load_trained(ecfg, ecfg.checkpoint), device()), kind)
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
    metrics = clip_metrics(evaluate_model(ecfg, random_model(ecfg, device()), device()), kind)
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


# ---------------------------------------------------------------------------------------------
# metadata and main
# ---------------------------------------------------------------------------------------------


def metadata(args, base, epochs, load):
    evs = eval_views(base, args.eval_view)
    return run_metadata({
        "config": os.path.relpath(args.config, REPO) if os.path.isabs(args.config) else args.config,
        "budget": f"{epochs} epochs x {base.data.batch_size} clips/batch, {base.model.backbone} backbone, "
                  f"{base.train.optimizer} lr {base.train.lr:g}, tau {base.train.temperature:g}",
        "seeds": ", ".join(map(str, args.seed_list)),
        "eval": "every variant: " + " + ".join(
            f"{ev['kind']} view {ev['frames']} frames" + (f" stride {ev['strides'][0]} centred" if ev["kind"] == "interval" else "")
            for ev in evs) + (" (features side by side)" if len(evs) > 1 else "") + f", short side {base.data.short_side}, "
                f"centre crop {evs[0]['crop_size']}, kNN k={base.eval.knn_k}, frozen backbone features",
    }, cuda=torch.cuda.is_available(), libs=("torch", "DALI"), load=load)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "pipelines" / "synthetic_v1.yaml"))
    p.add_argument("--epochs", type=int, help="training epochs of every run (default: the config's; --quick: 10)")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 per variant (default 3; --quick: 1)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--quick", action="store_true", help="10 epochs, 1 seed: a smoke run, its outputs tagged 'quick' in "
                   "benchmarks/results/quick/ (git-ignored)")
    p.add_argument("--eval-view", choices=EVAL_KINDS, default="segment",
                   help="the eval protocol's view (default segment: eval.json). 'interval' (8 consecutive frames, "
                   "centred) and 'both' (the two clips' features side by side) are secondary protocols: trained runs "
                   "are only re-evaluated (eval_interval.json, eval_both.json), outputs tagged 'eval-interval' / 'eval-both'")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="score on the test split (the final tables) or on the validation split carved from the "
                   "train videos (eval.val_fraction; every choice is made there): trained runs are re-evaluated, "
                   "outputs tagged 'val'")
    p.add_argument("--no-random-init", action="store_true", help="skip the random-init baseline")
    p.add_argument("--out-root", default=str(REPO / "runs" / "ablation"), help="where the run folders go")
    p.add_argument("--out", help="where the CSV, JSON and PNG go (default benchmarks/results/, --quick: "
                   "benchmarks/results/quick/)")
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
                                         "" if args.eval_view == "segment" else f"eval-{args.eval_view}",
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
    finish_metadata(meta, extra={
        "wall time": f"{(time.perf_counter() - t0) / 60:.1f} min (runs done before are reused, not timed)"})
    stem = results_dir(args.out, args.quick) / ("ablation" + (f"_{args.tag}" if args.tag else ""))
    report(rows, summarise(rows), meta, stem)


if __name__ == "__main__":
    main()
