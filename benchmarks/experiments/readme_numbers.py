"""The README's headline numbers, regenerated at HEAD: the main job over seeds, timed.

  python benchmarks/experiments/readme_numbers.py [--config pipelines/synthetic.yaml] [--seeds 0 1 2] [--out DIR]

Runs ``python -m timeclr.train CONFIG`` once per seed (``train.seed`` and ``data.seed``; the
synthetic videos are the same for every seed), each in its own run folder
``runs/readme/<config name>/seedS``, and records per seed the wall time and the evaluation of the
pretrained encoder and of the same network at random initialisation, and the margin between the
two per seed (overall and per class group). Writes ``readme_numbers.csv`` (one row per seed and
encoder, and a 'margin' row per seed) and ``readme_numbers.json`` (the run's metadata: machine,
versions, git revision; the timings; mean and sample standard deviation over the seeds), and prints
the table the README quotes. Another config than the main job's writes ``readme_numbers_<config
name>.*`` (``--config pipelines/synthetic_v1.yaml``: the v1 numbers the README quoted before #30).
The synthetic set is generated first, on its own clock, so each seed's time is the job's alone
(the README's "generation included" adds the two).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from timeclr.benchmarks.harness import REPO, finish_metadata, results_dir, run_metadata, write_results
from timeclr.training.run import RunDir

METRICS = ["linear_top1", "knn_top1", "retrieval_r1", "retrieval_r5"]
MAIN_JOB = "pipelines/synthetic.yaml"


def config_name(config: str) -> str:
    """The name of a config's runs and results: ``synthetic`` for the main job's."""
    return os.path.splitext(os.path.basename(config))[0]


def results_name(stem: str, config: str) -> str:
    """``stem`` for the main job's config, ``stem_<config name>`` for another."""
    return stem if config_name(config) == config_name(MAIN_JOB) else f"{stem}_{config_name(config)}"


def run_folder(config: str, seed) -> str:
    """Where the job of ``config`` at ``seed`` (or a placeholder such as "S") runs, relative to the repository."""
    return os.path.join("runs", "readme", config_name(config), f"seed{seed}")


def generate_set(config: str):
    """The config's synthetic set, generated if absent, in its own process (as the job would)."""
    subprocess.run([sys.executable, "-c", "from timeclr.config import load_config; from timeclr.synthetic.dataset import "
                    f"prepare_synthetic; prepare_synthetic(load_config({config!r}), 0)"], cwd=REPO, check=True)


def run_seed(seed: int, config: str = MAIN_JOB) -> dict:
    """The main job (``config``) at ``seed`` in ``run_folder``: its eval.json and wall time (None when a
    finished run was reused)."""
    out_dir = run_folder(config, seed)
    if os.path.exists(RunDir(os.path.join(REPO, out_dir)).eval_results):  # a finished seed is not rerun: delete it to
        print(f"seed {seed}: reusing {out_dir}/eval.json")        # measure again
        with open(RunDir(os.path.join(REPO, out_dir)).eval_results) as f:
            return {"eval": json.load(f), "seconds": None}
    cmd = [sys.executable, "-m", "timeclr.train", config, f"out_dir={out_dir}",
           f"train.seed={seed}", f"data.seed={seed}"]
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    seconds = time.perf_counter() - t0
    with open(RunDir(os.path.join(REPO, out_dir)).eval_results) as f:
        return {"eval": json.load(f), "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=MAIN_JOB, help=f"the job's config (default {MAIN_JOB}, the main job)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", help="output folder (default benchmarks/results/)")
    a = p.parse_args(argv)
    job = f"python -m timeclr.train {a.config} train.seed=S data.seed=S"
    meta = run_metadata({"python": platform.python_version(), "seeds": a.seeds, "job command": job}, libs=("torch", "DALI"))

    t0 = time.perf_counter()  # the synthetic set, generated once, outside the per-seed times
    generate_set(a.config)
    generate_s = time.perf_counter() - t0
    runs = {seed: run_seed(seed, a.config) for seed in a.seeds}

    groups = sorted({k for r in runs.values() for m in r["eval"].values() for k in m if k.startswith("knn_top1_")})
    metrics_all = METRICS + groups
    rows = []
    for seed, r in runs.items():
        for encoder, metrics in r["eval"].items():
            rows.append({"seed": seed, "encoder": encoder, "seconds": r["seconds"],
                         **{m: metrics.get(m) for m in metrics_all}})
        base = r["eval"].get("random_init", {})  # the margin of each seed over its own untrained network
        rows.append({"seed": seed, "encoder": "margin", "seconds": None,
                     **{m: r["eval"]["pretrained"][m] - base[m] if m in base else None for m in metrics_all}})
    summary = {}
    for encoder in ("pretrained", "random_init", "margin"):
        vals = {m: [row[m] for row in rows if row["encoder"] == encoder and row[m] is not None] for m in metrics_all}
        summary[encoder] = {m: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                                "min": min(v), "max": max(v)} for m, v in vals.items() if v}
    times = [r["seconds"] for r in runs.values() if r["seconds"] is not None]
    finish_metadata(meta, t0)
    write_results(results_dir(a.out) / results_name("readme_numbers", a.config), meta, ["seed", "encoder", "seconds", *metrics_all], rows,
                  sidecar={"generate_seconds": round(generate_s, 1), "job_seconds": [round(t, 1) for t in times],
                           "summary": summary}, digits=None)

    print(f"\n{meta['device']}; torch {meta['torch']}, DALI {meta['DALI']}, git {meta['git']}")
    if times:
        print(f"main job: {statistics.mean(times) / 60:.1f} min per seed ({', '.join(f'{t:.0f}' for t in times)} s); "
              f"generating the synthetic set: {generate_s:.0f} s")
    print(f"| encoder | {' | '.join(metrics_all)} |\n| --- |{' --- |' * len(metrics_all)}")
    for encoder, s in summary.items():
        print(f"| {encoder} | " + " | ".join(f"{s[m]['mean']:.1f} ± {s[m]['std']:.1f} ({s[m]['min']:.1f} to "
                                              f"{s[m]['max']:.1f})" if m in s else "-" for m in metrics_all) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
