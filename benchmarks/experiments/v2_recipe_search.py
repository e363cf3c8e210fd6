"""Which pretraining recipe learns the v2 set? A few recipes, scored on the validation split only.

The v1 recipe (``pipelines/synthetic_v1.yaml``: TimeCLR's segment + interval pair, RGB frames) did
not learn v2 on a first look (docs/results.md): kNN at or below random init. Before any view
design is compared on v2, this asks, on the **validation split** (``eval.split=val``: 20 % of the
train videos per class, never the test split), whether a recipe change does. Each recipe is
``pipelines/synthetic_v2.yaml`` with a few overrides, TimeCLR's views, 40 epochs, seed 0 (one seed:
a screen for a recipe that learns at all, not a measurement of its size):

    rgb            the v1 recipe on RGB frames (model.input=rgb)
    rgb_gray       ... every view grayscale (colour is the easiest shortcut)
    rgb_tau05      ... temperature 0.5
    rgb_bs64       ... 64 videos per batch (more negatives)
    difference     the backbone sees consecutive-frame differences (model.input=difference)
    difference_gray  ... and every view grayscale
    difference_e80   ... 80 epochs

Each run scores the pretrained encoder and the same network untrained on the segment clip, the
interval clip and both side by side (``eval.per_view``); the table gives kNN top-1 per clip and
per class group. Runs live in ``runs/sweep/<name>`` and are reused when their ``eval.json`` exists.

    python benchmarks/experiments/v2_recipe_search.py            # ~15 min on 2 cores

Writes ``benchmarks/results/v2_recipe_val.csv`` and ``.json`` (one row per recipe, encoder and clip).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from timeclr.benchmarks.harness import REPO, finish_metadata, print_table, results_dir, run_metadata, write_results

COMMON = ["train.epochs=40", "train.knn_every=0", "eval.split=val", "eval.per_view=true"]
GRAY = ["data.views.0.grayscale_prob=1.0", "data.views.1.grayscale_prob=1.0"]
RECIPES = {
    "rgb": ["model.input=rgb"],
    "rgb_gray": ["model.input=rgb", *GRAY],
    "rgb_tau05": ["model.input=rgb", "train.temperature=0.5"],
    "rgb_bs64": ["model.input=rgb", "data.batch_size=64"],
    "difference": ["model.input=difference"],
    "difference_gray": ["model.input=difference", *GRAY],
    "difference_e80": ["model.input=difference", "train.epochs=80"],
}


def run(name, overrides, root):
    out = root / name
    if not (out / "eval.json").exists():
        cmd = [sys.executable, "-m", "timeclr.train", "pipelines/synthetic_v2.yaml", *COMMON, *overrides,
               f"out_dir={out}"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "eval.json").read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    p.add_argument("--out-root", default=str(REPO / "runs" / "sweep"))
    args = p.parse_args()
    t0, meta = time.perf_counter(), run_metadata({"config": "pipelines/synthetic_v2.yaml", "common": " ".join(COMMON),
                                                  "seed": 0}, libs=("torch", "DALI"))
    rows, groups = [], None
    for name in args.recipes:
        done = run(name, RECIPES[name], Path(args.out_root))
        for encoder in ("pretrained", "random_init"):
            for clip, m in done[encoder]["by_clip"].items():
                groups = groups or [k[len("knn_top1_"):] for k in m if k.startswith("knn_top1_")]
                rows.append({"recipe": name, "overrides": " ".join(RECIPES[name]), "encoder": encoder, "clip": clip,
                             "knn_top1": m["knn_top1"], "linear_top1": m["linear_top1"],
                             **{f"knn_top1_{g}": m[f"knn_top1_{g}"] for g in groups},
                             "run": os.path.relpath(Path(args.out_root) / name, REPO)})
    finish_metadata(meta, t0)
    columns = ["recipe", "encoder", "clip", "knn_top1", "linear_top1", *[f"knn_top1_{g}" for g in groups],
               "overrides", "run"]
    stem = results_dir() / "v2_recipe_val"
    write_results(stem, meta, columns, rows)
    print_table(["recipe", "encoder", "clip", "kNN", "linear", *groups],
                [[r["recipe"], r["encoder"], r["clip"], f"{r['knn_top1']:.1f}", f"{r['linear_top1']:.1f}",
                  *[f"{r[f'knn_top1_{g}']:.1f}" for g in groups]] for r in rows])
    print(f"\nwrote {stem}.csv and .json")


if __name__ == "__main__":
    main()
