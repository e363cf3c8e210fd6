"""Issue #30's three questions, answered from the v2 ablation's runs, with 95 % intervals.

    1. Do segment views carry long-range order better than interval views?
       the `order` group: design `segment` minus design `interval`
    2. Do interval views carry fast dynamics better?
       the `fast` group: design `interval` minus design `segment`
    3. Does TimeCLR's pair beat both single-kind pairs on the `both` group?
       the `both` group: `timeclr` minus `segment`, and `timeclr` minus `interval`

Questions 2 and 3 are asked twice: with interval clips at strides 1-3 (the first ablation) and at
stride 1 only (`interval_s1`, `timeclr_s1`: the stride set screened on the validation split
afterwards, since strides 2 and 3 alias the fast drift and can show two views of one video
drifting opposite ways).

Each difference is paired by seed (the same seed sets initialisation, order, frames and
augmentation of both runs) and given as its mean over the seeds with the 95 % t interval; an
interval that excludes 0 is a yes or a no, one that holds 0 is "no difference measured". The
answer is read per eval clip (segment, interval, both side by side), because what a feature can
show depends on the clip it is computed from; the clip named first in the README is `both`.

Also checked: the issue's target that the best design (by mean kNN on the validation split, eval
clip `both`) beats random init by at least 20 kNN points in every group on every seed.

Reads ``benchmarks/results/ablation_v2*.csv`` (``ablation.py --config pipelines/synthetic_v2.yaml
--tag v2 ...``) and ``ablation_v2s1*.csv`` (the stride-1 designs, ``--tag v2s1 ...``), writes ``benchmarks/results/v2_answers.csv`` and ``.json``, prints both tables:

    python benchmarks/experiments/v2_answers.py
"""
import math
import statistics
import time

from timeclr.benchmarks.harness import (RESULTS, T95, finish_metadata, print_table, read_results, run_metadata,
                                        write_results)

SETS = ("ablation_v2", "ablation_v2s1")  # the first ablation's designs, then the stride-1 designs
CLIPS = {"both": "_eval-both", "segment": "", "interval": "_eval-interval"}  # eval clip: file suffix
VALIDATION = "_eval-both_val"
QUESTIONS = [  # (question, group, design, compared with)
    ("1. segment views carry long-range order better than interval views", "order", "segment", "interval"),
    ("2. interval views carry fast dynamics better than segment views", "fast", "interval", "segment"),
    ("3a. TimeCLR's pair beats two segment views on the both group", "both", "timeclr", "segment"),
    ("3b. TimeCLR's pair beats two interval views on the both group", "both", "timeclr", "interval"),
    ("2'. stride-1 interval views carry fast dynamics better than segment views", "fast", "interval_s1", "segment"),
    ("3a'. TimeCLR's stride-1 pair beats two segment views on the both group", "both", "timeclr_s1", "segment"),
    ("3b'. TimeCLR's stride-1 pair beats two stride-1 interval views on the both group", "both", "timeclr_s1",
     "interval_s1"),
]
MARGIN = 20.0  # the target: best design minus random init, kNN points, every group and seed


def runs_by(rows) -> dict:
    """{(variant, seed): row} of the finished runs."""
    return {(r["variant"], int(r["seed"])): r for r in rows if r["kind"] == "run" and r.get("knn_top1") not in (None, "")}


def read_sets(suffix) -> list:
    """The rows of every set's result file for one eval clip (``suffix``), those that exist."""
    return [r for name in SETS if (RESULTS / f"{name}{suffix}.csv").exists() for r in read_results(RESULTS / f"{name}{suffix}")[1]]


def paired(runs, key, a, b):
    """(mean, 95 % half-width, n, per-seed differences) of run a minus run b over their common seeds."""
    seeds = sorted(s for v, s in runs if v == a and (b, s) in runs)
    d = [float(runs[(a, s)][key]) - float(runs[(b, s)][key]) for s in seeds]
    if not d:
        return None, None, 0, []
    half = T95.get(len(d) - 1, 1.96) * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return statistics.fmean(d), half, len(d), d


def verdict(mean, half):
    if mean is None or math.isnan(half):
        return "not measured"
    if mean - half > 0:
        return "yes"
    if mean + half < 0:
        return "no (the reverse)"
    return "no difference measured"


def main():
    t0 = time.perf_counter()
    meta = run_metadata({"sources": ", ".join(f"{k}: {{{','.join(SETS)}}}{v}.csv" for k, v in CLIPS.items())
                         + f", choice: {{{','.join(SETS)}}}{VALIDATION}.csv"})
    answers = []
    for clip, suffix in CLIPS.items():
        runs = runs_by(read_sets(suffix))
        if not runs:
            print(f"(no results for clip {clip} yet: left out)")
            continue
        for question, group, a, b in QUESTIONS:
            mean, half, n, d = paired(runs, f"knn_top1_{group}", a, b)
            answers.append({"question": question, "clip": clip, "group": group, "design": a, "compared_with": b,
                            "difference": mean, "ci95": half, "seeds": n, "per_seed": " ".join(f"{x:+.1f}" for x in d),
                            "answer": verdict(mean, half)})
    print_table(["question", "clip", "difference (kNN points)", "per seed", "answer"],
                [[a["question"], a["clip"], "-" if a["difference"] is None else f"{a['difference']:+.1f} ± {a['ci95']:.1f}",
                  a["per_seed"], a["answer"]] for a in answers])
    # the best design, chosen on the validation split, against random init on the test split
    targets = []
    val = [r for r in read_sets(VALIDATION) if r["kind"] == "summary" and r["variant"] != "random_init"]
    test = read_sets(CLIPS["both"])
    if val and test:
        best = max(val, key=lambda r: float(r["knn_top1"]))["variant"]
        runs = runs_by(test)
        groups = [k[len("knn_top1_"):] for k in test[0] if k.startswith("knn_top1_") and not k.endswith(("_std", "_ci95", "_margin"))]
        for g in groups:
            _, _, _, d = paired(runs, f"knn_top1_{g}", best, "random_init")
            targets.append({"design": best, "group": g, "per_seed": " ".join(f"{x:+.1f}" for x in d),
                            "min_margin": min(d) if d else None, "met": bool(d) and min(d) >= MARGIN})
        print(f"\nbest design on the validation split (mean kNN, both clips): {best}; its margin over random init "
              f"on the test split per seed (target >= +{MARGIN:.0f} in every group):")
        print_table(["group", "per seed", "met"], [[t["group"], t["per_seed"], "yes" if t["met"] else "no"] for t in targets])
    finish_metadata(meta, t0)
    stem = RESULTS / "v2_answers"
    rows = [{"kind": "answer", **a} for a in answers] + [{"kind": "target", **t} for t in targets]
    columns = ["kind", "question", "clip", "group", "design", "compared_with", "difference", "ci95", "seeds", "per_seed",
               "answer", "min_margin", "met"]
    write_results(stem, meta, columns, rows)
    print(f"\nwrote {stem}.csv and .json")


if __name__ == "__main__":
    main()
