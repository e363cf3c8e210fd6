"""Why is rotation direction at chance? The supervised ceiling of each class group, per clip kind.

The synthetic set's rotation classes (clockwise vs counter-clockwise, 120-240 degrees over the
motion window) stay near chance for every pretrained encoder. Before blaming the method, this
asks whether the small CNN can learn them *with* labels, and from which frames: it fine-tunes
the network from random initialisation (``pipelines/synthetic_v1_finetune.yaml``, its budget,
``checkpoint=random``) on each clip kind below, 3 seeds each, and reports top-1 per class group
(synthetic_v1.yaml's ``eval.groups``) on the test split, multi-view tested as the config says:

    segment8    one frame from each of 8 segments (32 frames: a step of 4 frames; 15-60 degrees
                of turn between frames shown): the evaluation's and fine-tuning's view
    interval8   8 consecutive frames (stride 1: 4-15 degrees between frames, a quarter of the video)
    interval16  16 consecutive frames (stride 1: half the video)
    segment16   one frame from each of 16 segments (a step of 2 frames)

If a group is learnable with dense frames but not with sparse ones, its cause is temporal
aliasing between the frames a view shows; if with none, the network (receptive field, global
pooling that averages the opposite tangential motions of a turn away) or the classes.

    python benchmarks/experiments/rotation_ceiling.py        # 4 clip kinds x 3 seeds: ~5 min on 2 cores
    python benchmarks/experiments/rotation_ceiling.py --backbone small_wide --kinds segment8 --epochs 20 60

What it found (docs/results.md, "Ablation on the synthetic set"): the budget was the cause. With 60
epochs instead of 20, ``small`` learns rotation direction from segment clips (66.7 % over 3
seeds); at 20 it mostly calls rotation videos *grow*, and ``small_wide`` (a pooled unit sees 63
pixels, the crop, not 31) does so less often. 8 consecutive frames stay poor even at 60 epochs.

Writes ``benchmarks/results/rotation_ceiling.csv`` for the defaults, else
``rotation_ceiling-<backbone>.csv`` (a plain CSV: one row per run, then mean and 95 % interval per
clip kind and epoch budget), and the run's metadata in the ``.json`` beside it.
"""
import argparse
import gc
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from timeclr.benchmarks.experiments.finetune_synthetic import FINETUNE_KEYS, differences, group_names, group_top1
from timeclr.benchmarks.harness import (REPO, finish_metadata, mean_std, print_table, results_dir, run_metadata,
                                        write_results)
from timeclr.config import load_config
from timeclr.finetune import finetune
from timeclr.training.run import RunDir

KINDS = {  # name -> view overrides
    "segment8": ["data.views.0.kind=segment", "data.views.0.frames=8"],
    "interval8": ["data.views.0.kind=interval", "data.views.0.frames=8", "data.views.0.strides=[1]"],
    "interval16": ["data.views.0.kind=interval", "data.views.0.frames=16", "data.views.0.strides=[1]"],
    "segment16": ["data.views.0.kind=segment", "data.views.0.frames=16"],
}
SEEDS = 3


# what a run's result depends on: finetune_synthetic's keys, less the manifest, which
# timeclr.finetune fills in (chosen_manifests) only when the run starts
RUN_KEYS = tuple(k for k in FINETUNE_KEYS if k != "data.manifest")


def finished(cfg):
    """The results of a run already done with this config (a rerun only redoes the table), else None."""
    results, saved = Path(RunDir(cfg.out_dir).finetune_results), Path(RunDir(cfg.out_dir).config)
    if not (results.exists() and saved.exists()):
        return None
    diff = differences(OmegaConf.load(saved), cfg, RUN_KEYS)
    if diff:
        raise SystemExit(f"rotation_ceiling: {cfg.out_dir} holds a run with another config:\n" + "\n".join(diff)
                         + "\ndelete it to redo it")
    print(f"reusing {results}", flush=True)
    return json.loads(results.read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="small", help="model.backbone (default: small, the config's)")
    p.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS), help="clip kinds (default: all)")
    p.add_argument("--epochs", nargs="+", type=int, default=[None], help="train.epochs (default: the config's 20)")
    p.add_argument("--out", help="output folder (default benchmarks/results/)")
    args = p.parse_args()
    t_start = time.perf_counter()
    meta = run_metadata({"protocol": "supervised from random init, pipelines/synthetic_v1_finetune.yaml's budget and "
                                     "test, per-group top-1 = mean of the group's per-class accuracies (balanced test "
                                     "split)"}, cuda=torch.cuda.is_available())
    groups = group_names()
    rows = []
    for epochs in args.epochs:
        for kind in args.kinds:
            for seed in range(SEEDS):
                tag = f"{kind}-seed{seed}" if args.backbone == "small" and epochs is None else \
                    f"{args.backbone}-e{epochs}-{kind}-seed{seed}"
                cfg = load_config(str(REPO / "pipelines" / "synthetic_v1_finetune.yaml"),
                                  [f"out_dir={REPO / 'runs' / 'rotation_ceiling' / tag}", "checkpoint=random",
                                   f"train.seed={seed}", f"data.seed={seed}", f"data.root={REPO / 'data' / 'synthetic'}",
                                   f"model.backbone={args.backbone}", *KINDS[kind],
                                   *([f"train.epochs={epochs}"] if epochs else [])])
                result = finished(cfg) or finetune(cfg)
                row = dict(kind="run", backbone=args.backbone, epochs=cfg.train.epochs, clip=kind, seed=seed,
                           top1=result["top1"], **group_top1(result["per_class"]))
                rows.append(row)
                print(f"[{args.backbone} {row['epochs']} epochs {kind} seed {seed}] top-1 {row['top1']:.1f}  "
                      + "  ".join(f"{g} {row[f'top1_{g}']:.1f}" for g in groups), flush=True)
                gc.collect()
    keys = ["top1"] + [f"top1_{g}" for g in groups]
    cells = sorted({(r["epochs"], r["clip"]) for r in rows}, key=lambda c: (c[0], list(KINDS).index(c[1])))
    summary = [dict(kind="summary", backbone=args.backbone, epochs=e, clip=k, seed="", n=SEEDS,
                    **mean_std([r for r in rows if (r["epochs"], r["clip"]) == (e, k)], keys)) for e, k in cells]
    print_table(["epochs", "clip", *keys], [[str(s["epochs"]), s["clip"], *[f"{s[k]:.1f} [±{s[f'{k}_ci95']:.1f}]" for k in keys]]
                                            for s in summary])
    finish_metadata(meta, t_start)
    columns = ["kind", "backbone", "epochs", "clip", "seed", "n"] + [c for k in keys for c in (k, f"{k}_std", f"{k}_ci95")]
    defaults = args.backbone == "small" and args.kinds == list(KINDS) and args.epochs == [None]
    name = "rotation_ceiling" if defaults else f"rotation_ceiling-{args.backbone}"
    csv_path, json_path = write_results(results_dir(args.out) / name, meta, columns, rows + summary)
    print(f"wrote {csv_path} and {json_path}")


if __name__ == "__main__":
    main()
