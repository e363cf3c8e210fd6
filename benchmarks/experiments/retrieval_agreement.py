"""Do a pretrained encoder's nearest videos share the query's class more often than random init's?

  python benchmarks/experiments/retrieval_agreement.py [--config pipelines/synthetic.yaml]
      [--checkpoint runs/synthetic/checkpoint.pt] [--seeds 0 1 2]

The synthetic set's test split (``data.root``/test of ``--config``; the main job's: 210 videos, 14
classes of 15) is embedded with ``python -m timeclr.embed`` by each pretrained encoder and by the
same network at random initialisation, one per seed (``train.seed=S``: the init
``timeclr.evaluate`` compares against); then the neighbour-class agreement at K = 5 (the share of
each video's 5 nearest others, by cosine similarity, in its class; chance is 14/209 = 6.7 % on the
main job's set) is measured per encoder (``timeclr.retrieve``). Pretrained encoders:
``--checkpoint`` (one, as given), else the job's run per seed in ``runs/readme/<config
name>/seedS/`` (``readme_numbers.py`` trains them; a missing seed is trained here with the same
command). Writes ``retrieval_agreement.csv`` (a row per seed and encoder), its ``.json``
(metadata; mean, std, min, max) and the contact sheets of the first seed, pretrained above random
init, in ``retrieval_agreement/`` (another config than the main job's: ``retrieval_agreement_<config
name>.*``, ``--config pipelines/synthetic_v1.yaml`` for v1's numbers).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from timeclr.benchmarks.harness import REPO, finish_metadata, results_dir, run_metadata, write_results
from timeclr.benchmarks.experiments.readme_numbers import (MAIN_JOB, config_name, generate_set, results_name, run_folder,
                                                             run_seed)
from timeclr.config import load_config
from timeclr.retrieve import agreement, load_embedding, neighbours, retrieve

K = 5


def embed(config: str, checkpoint: str, seed: int, test: str, out: str):
    cmd = [sys.executable, "-m", "timeclr.embed", config, f"checkpoint={checkpoint}",
           f"train.seed={seed}", test, "-o", out]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def pretrained(config: str, seed: int, given: str | None) -> str:
    if given:
        return given
    path = os.path.join(run_folder(config, seed), "checkpoint.pt")
    if not os.path.exists(os.path.join(REPO, path)):
        run_seed(seed, config)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=MAIN_JOB, help=f"the job's config (default {MAIN_JOB}, the main job)")
    p.add_argument("--checkpoint", help="one pretrained checkpoint for every seed (default: runs/readme/<config name>/seedS/)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random-init seeds (and runs)")
    p.add_argument("--out", help="output folder (default benchmarks/results/)")
    a = p.parse_args(argv)
    test = os.path.join(load_config(a.config).data.root, "test")
    meta = run_metadata({"config": a.config, "k": K, "test split": test, "seeds": a.seeds, "pretrained": a.checkpoint
                         or os.path.join(run_folder(a.config, "S"), "checkpoint.pt")}, libs=("torch", "DALI"))
    t0 = time.perf_counter()
    generate_set(a.config)
    out = results_dir(a.out)
    work = os.path.join(REPO, "runs", "retrieval_agreement", config_name(a.config))
    rows, firsts = [], None
    for seed in a.seeds:
        folders = {}
        for encoder, ckpt in (("pretrained", pretrained(a.config, seed, a.checkpoint)), ("random_init", "random")):
            if encoder == "pretrained" and a.checkpoint and firsts:  # one given encoder: measured once
                continue
            folders[encoder] = os.path.join(work, f"seed{seed}", encoder)
            embed(a.config, ckpt, seed, test, folders[encoder])
            emb = load_embedding(folders[encoder])
            same, chance = agreement(emb["classes"], neighbours(emb["feats"], K)[0])
            rows.append({"seed": seed, "encoder": encoder, "agreement_at_5": 100 * same, "chance": 100 * chance})
        firsts = firsts or folders
    sheets = out / results_name("retrieval_agreement", a.config)
    shutil.rmtree(sheets, ignore_errors=True)
    retrieve([firsts["pretrained"], firsts["random_init"]], sheets, K, n_queries=4)
    summary = {}
    for encoder in ("pretrained", "random_init"):
        v = [r["agreement_at_5"] for r in rows if r["encoder"] == encoder]
        summary[encoder] = {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                            "min": min(v), "max": max(v)}
    finish_metadata(meta, t0)
    write_results(out / results_name("retrieval_agreement", a.config), meta, ["seed", "encoder", "agreement_at_5", "chance"], rows,
                  sidecar={"summary": summary}, digits=None)
    print(f"\n{meta['device']}; git {meta['git']}; neighbour-class agreement at K = {K}, % (chance {rows[0]['chance']:.1f})")
    for encoder, s in summary.items():
        n = sum(r["encoder"] == encoder for r in rows)
        print(f"  {encoder:12s} {s['mean']:.1f} ± {s['std']:.1f} (min {s['min']:.1f}, max {s['max']:.1f}) over {n} run(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
