"""Why is rotation direction at chance? The supervised ceiling of each class group, per clip kind.

The synthetic set's rotation classes (clockwise vs counter-clockwise, 120-240 degrees over the
motion window) stay near chance for every pretrained encoder. Before blaming the method, this
asks whether the small CNN can learn them *with* labels, and from which frames: it fine-tunes
the network from random initialisation (``pipelines/synthetic_finetune.yaml``, its budget,
``checkpoint=random``) on each clip kind below, 3 seeds each, and reports top-1 per class group
(synthetic.yaml's ``eval.groups``) on the test split, multi-view tested as the config says:

    segment8    one frame from each of 8 segments (32 frames: a step of 4 frames; 15-60 degrees
                of turn between frames shown): the evaluation's and fine-tuning's view
    interval8   8 consecutive frames (stride 1: 4-15 degrees between frames, a quarter of the video)
    interval16  16 consecutive frames (stride 1: half the video)
    segment16   one frame from each of 16 segments (a step of 2 frames)

If a group is learnable with dense frames but not with sparse ones, its cause is temporal
aliasing between the frames a view shows; if with none, the network (receptive field, global
pooling that averages the opposite tangential motions of a turn away) or the classes.

    python benchmarks/rotation_ceiling.py        # 4 clip kinds x 3 seeds: ~5 min on 2 cores

Writes ``benchmarks/results/rotation_ceiling.csv`` ('#' metadata lines, one row per run, then
mean and 95 % interval per clip kind).
"""
import datetime
import gc
import shlex
import sys

import torch

from finetune_synthetic import group_names, group_top1
from runinfo import REPO, device_name, git_rev, mean_std, print_table, write_csv
from timeclr.config import load_config
from timeclr.finetune import finetune

KINDS = {  # name -> view overrides
    "segment8": ["data.views.0.kind=segment", "data.views.0.frames=8"],
    "interval8": ["data.views.0.kind=interval", "data.views.0.frames=8", "data.views.0.strides=[1]"],
    "interval16": ["data.views.0.kind=interval", "data.views.0.frames=16", "data.views.0.strides=[1]"],
    "segment16": ["data.views.0.kind=segment", "data.views.0.frames=16"],
}
SEEDS = 3


def main():
    groups = group_names()
    rows = []
    for kind, views in KINDS.items():
        for seed in range(SEEDS):
            out = REPO / "runs" / "rotation_ceiling" / f"{kind}-seed{seed}"
            cfg = load_config(str(REPO / "pipelines" / "synthetic_finetune.yaml"),
                              [f"out_dir={out}", "checkpoint=random", f"train.seed={seed}", f"data.seed={seed}",
                               f"data.root={REPO / 'data' / 'synthetic'}", *views])
            result = finetune(cfg)
            row = dict(kind="run", clip=kind, seed=seed, top1=result["top1"], **group_top1(result["per_class"]))
            rows.append(row)
            print(f"[{kind} seed {seed}] top-1 {row['top1']:.1f}  "
                  + "  ".join(f"{g} {row[f'top1_{g}']:.1f}" for g in groups), flush=True)
            gc.collect()
    keys = ["top1"] + [f"top1_{g}" for g in groups]
    summary = [dict(kind="summary", clip=k, seed="", n=SEEDS, **mean_std([r for r in rows if r["clip"] == k], keys))
               for k in KINDS]
    print_table(["clip", *keys], [[s["clip"], *[f"{s[k]:.1f} [±{s[f'{k}_ci95']:.1f}]" for k in keys]] for s in summary])
    meta = {"machine": device_name(torch.cuda.is_available()), "git": git_rev(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "python benchmarks/rotation_ceiling.py " + shlex.join(sys.argv[1:]),
            "protocol": "supervised from random init, pipelines/synthetic_finetune.yaml's budget and test, "
                        "per-group top-1 = mean of the group's per-class accuracies (balanced test split)"}
    columns = ["kind", "clip", "seed", "n"] + [c for k in keys for c in (k, f"{k}_std", f"{k}_ci95")]
    write_csv(REPO / "benchmarks" / "results" / "rotation_ceiling.csv", meta, columns, rows + summary)
    print("wrote benchmarks/results/rotation_ceiling.csv")


if __name__ == "__main__":
    main()
