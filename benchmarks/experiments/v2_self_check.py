"""Does each group of the v2 synthetic set test what it claims? The set's self-check (issue #30).

Per class group of ``pipelines/synthetic_v2.yaml`` (fast, order, both, slow), on the test split:

    random init   kNN top-1 of the untrained network (``train.seed`` 0, 1, 2 draw its weights),
                  from the segment clip, the interval clip and both concatenated
                  (``eval.per_view``); the highest of the three is the one that counts
    ceilings      top-1 of the network trained with labels from random initialisation
                  (``pipelines/synthetic_v1_finetune.yaml``'s recipe on v2, ``--epochs``) on sparse
                  clips (``segment8``: one frame from each of 8 segments), dense clips
                  (``interval8``: 8 consecutive frames) and every frame (``all32``: the 32 frames,
                  what any view could see, for the group that needs both kinds), ``--seeds`` seeds each

A group of n classes passes when random init cannot tell its classes apart (kNN at most
100/n + 15) and there is room to learn (kNN at least 40 points below the better ceiling). A
group's score is the full 14-class classifier's top-1 on that group's test videos, so features
that only tell which group a video is in score 100/n at most.

    python benchmarks/experiments/v2_self_check.py          # ~20 min on 2 cores

Writes ``benchmarks/results/v2_self_check.csv`` (one row per run, then a summary per group) and
its metadata in the ``.json`` beside it. Runs are kept under ``runs/v2_self_check/`` and reused.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from timeclr.benchmarks.harness import (REPO, finish_metadata, mean_std, print_table, results_dir, run_metadata,
                                        write_results)
from timeclr.config import load_config
from timeclr.evaluate import main as evaluate_main
from timeclr.finetune import finetune
from timeclr.training.run import RunDir

CONFIG = str(REPO / "pipelines" / "synthetic_v2.yaml")
CLIPS = {  # fine-tuning view -> overrides
    "segment8": ["data.views.0.kind=segment", "data.views.0.frames=8"],
    "interval8": ["data.views.0.kind=interval", "data.views.0.frames=8", "data.views.0.strides=[1]"],
    "all32": ["data.views.0.kind=interval", "data.views.0.frames=32", "data.views.0.strides=[1]"],
}
EVAL_CLIPS = ("segment", "interval", "segment+interval")


def set_overrides(cfg) -> list:
    """What makes a synthetic recipe run on v2: the set, its folder and its sizes (``cfg``:
    synthetic_v2.yaml's config)."""
    return [f"synthetic.set={cfg.synthetic.set}", f"data.root={REPO / cfg.data.root}",
            f"synthetic.train_per_class={cfg.synthetic.train_per_class}",
            f"synthetic.test_per_class={cfg.synthetic.test_per_class}"]


def random_init(seed: int, groups) -> dict:
    """{group: {eval clip: kNN top-1}} of the untrained network ``train.seed=seed``."""
    out_dir = REPO / "runs" / "v2_self_check" / f"random-seed{seed}"
    result = out_dir / "eval.json"
    if not result.exists():
        # the self-check is of the set on RGB frames, as it ran before synthetic_v2.yaml took difference input
        evaluate_main([CONFIG, "checkpoint=random", "model.input=rgb", "eval.per_view=true", f"train.seed={seed}",
                       f"out_dir={out_dir}"])
    by_clip = json.loads(result.read_text())["by_clip"]
    return {clip: {g: by_clip[clip][f"knn_top1_{g}"] for g in groups} for clip in EVAL_CLIPS}


def ceiling(clip: str, seed: int, epochs: int, v2) -> dict:
    """The finetune.json of the network trained from random init with labels on ``clip`` clips."""
    out_dir = REPO / "runs" / "v2_self_check" / f"{clip}-e{epochs}-seed{seed}"
    results = Path(RunDir(str(out_dir)).finetune_results)
    if results.exists():
        return json.loads(results.read_text())
    cfg = load_config(str(REPO / "pipelines" / "synthetic_v1_finetune.yaml"),
                      [f"out_dir={out_dir}", "checkpoint=random", f"train.seed={seed}", f"data.seed={seed}",
                       f"train.epochs={epochs}", *set_overrides(v2), *CLIPS[clip]])
    return finetune(cfg)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=40, help="fine-tuning epochs of the segment8 and interval8 ceilings")
    # every frame is 4x the input of an 8-frame clip for the same steps; at 40 epochs it trained
    # the both group on 2 of 3 seeds (73, 28, 67 %)
    p.add_argument("--epochs-all32", type=int, default=80, help="fine-tuning epochs of the all32 ceiling")
    p.add_argument("--out", help="output folder (default benchmarks/results/)")
    args = p.parse_args()
    t_start = time.perf_counter()
    meta = run_metadata({"config": "pipelines/synthetic_v2.yaml", "ceiling_recipe": "pipelines/synthetic_v1_finetune.yaml",
                         "epochs": args.epochs, "epochs_all32": args.epochs_all32, "seeds": args.seeds,
                         "rule": "random-init kNN <= 100/n + 15 and <= best ceiling - 40"}, cuda=torch.cuda.is_available())
    v2 = load_config(CONFIG)
    groups = OmegaConf.to_container(v2.eval.groups)
    rows = []
    for seed in range(args.seeds):
        knn = random_init(seed, groups)
        for g in groups:
            rows.append(dict(kind="run", what="random_init", seed=seed, group=g,
                             **{f"knn_{c}": knn[c][g] for c in EVAL_CLIPS}))
    for clip in CLIPS:
        for seed in range(args.seeds):
            done = ceiling(clip, seed, args.epochs_all32 if clip == "all32" else args.epochs, v2)
            for g, names in groups.items():
                rows.append(dict(kind="run", what=f"ceiling_{clip}", seed=seed, group=g,
                                 top1=statistics.fmean(done["per_class"][n] for n in names)))
    summary = []
    for g, names in groups.items():
        n = len(names)
        rand = [r for r in rows if r["what"] == "random_init" and r["group"] == g]
        worst = max(mean_std(rand, [f"knn_{c}"])[f"knn_{c}"] for c in EVAL_CLIPS)
        ceilings = {clip: mean_std([r for r in rows if r["what"] == f"ceiling_{clip}" and r["group"] == g], ["top1"])
                    for clip in CLIPS}
        best = max(c["top1"] for c in ceilings.values())
        summary.append(dict(kind="summary", group=g, classes=n, chance=100 / n,
                            random_knn_max=worst, random_knn_limit=100 / n + 15,
                            **{f"ceiling_{clip}": c["top1"] for clip, c in ceilings.items()},
                            **{f"ceiling_{clip}_ci95": c["top1_ci95"] for clip, c in ceilings.items()},
                            passes=bool(worst <= 100 / n + 15 and worst <= best - 40)))
    print_table(["group", "classes", "random kNN (max of clips)", "limit", *[f"ceiling {c}" for c in CLIPS], "passes"],
                [[s["group"], str(s["classes"]), f"{s['random_knn_max']:.1f}", f"{s['random_knn_limit']:.1f}",
                  *[f"{s[f'ceiling_{c}']:.1f} [±{s[f'ceiling_{c}_ci95']:.1f}]" for c in CLIPS], str(s["passes"])]
                 for s in summary])
    finish_metadata(meta, t_start)
    columns = ["kind", "what", "seed", "group", *[f"knn_{c}" for c in EVAL_CLIPS], "top1", "classes", "chance",
               "random_knn_max", "random_knn_limit", *[f"ceiling_{c}" for c in CLIPS],
               *[f"ceiling_{c}_ci95" for c in CLIPS], "passes"]
    csv_path, json_path = write_results(results_dir(args.out) / "v2_self_check", meta, columns, rows + summary)
    print(f"wrote {csv_path} and {json_path}")


if __name__ == "__main__":
    main()
