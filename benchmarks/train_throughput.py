"""Benchmark: clips/s of the TimeCLR training step fed by the DALI pipeline vs by tensors in memory.

What is measured
----------------
One training step is the one ``timeclr.train`` runs, called the same way: ``timeclr.training.run.train_step``
with ``timeclr.training.objectives.contrastive`` (move the 2 views to the device, forward both through the
TimeCLR model, backbone + projection head, bf16 autocast on CUDA; the NT-Xent loss over the 2
views, ``timeclr.nt_xent`` with the config's backend: fused Triton on CUDA, chunked PyTorch on
CPU; backward, gradient clipping, the optimizer step, the config's: AdamW for synthetic_v1.yaml, at a
fixed learning rate), and the non-finite check of ``timeclr.training.run.FiniteCheck`` every
``train.log_every`` steps, as training does. It is timed in
three modes, on the same model and optimizer:

    in-memory   the step on batches already in memory (on the step's device): 4 real batches from
                the pipeline, cloned once and cycled. The step's own speed: no data loading at all
    dali        the step fed by ``timeclr.pipelines.loader.video.VideoLoader`` (train mode: random frame
                positions, augmentation; DALI prefetches while the step runs), as in training
    pipeline    (diagnostic) the DALI loader alone, no step: how fast the data can come

**data-bound ratio** = clips/s(dali) / clips/s(in-memory): 1.0 means the pipeline keeps up (the
step never waits for data); below 1 the loop is data-bound, or, on a CPU, the pipeline's threads
and the step's threads slow each other down on the same cores.

Each mode runs a fixed number of steps after its own warm-up steps (untimed: they also drain the
batches DALI prefetched while another mode ran), in alternating rounds (in-memory, dali,
pipeline; ``--rounds`` times), so a change in the machine's load hits every mode alike; the
summary is the median over rounds. clips/s = steps x batch / wall time of the timed window
(CUDA: synchronised at both ends; in between the host syncs only at the non-finite checks, as in
training). Also reported: the median step time (the step alone, data excluded; host time, which
on CUDA is the launch time unless a check syncs) and the fraction of the window spent
waiting for the next batch.

Presets
-------
    --device cpu    the synthetic config as it is (``pipelines/synthetic_v1.yaml``, RGB frames): ``small``
                    backbone, 2 views x 8 frames x 56², batch 16, DALI CPU pipeline (2 threads),
                    fp32, the 64² synthetic videos. Tested.
    --device cuda   R(2+1)D-18 at 16 x 112² per view (interval strides as in the config, shrunk
                    to fit 32-frame videos: 16 frames at stride <= 2), batch 32, bf16 autocast,
                    the GPU pipeline (``data.device=gpu``: NVDEC decode, GPU augmentation,
                    4 DALI threads) on a synthetic set rendered at 128² (``data/synthetic_s128``,
                    generated on first use, so the 112² crops are not upsampled).
                    UNTESTED: written without a GPU. The model, shapes and step were run on CPU
                    (``--device cpu --backbone r2plus1d_18 --frames 16 --crop 112``), but the GPU
                    pipeline (DALI 'mixed' VP9 decode), bf16 autocast, the Triton loss inside the
                    step, the 128² dataset and the CUDA timing have never run. See UNTESTED below.

``--backbone``, ``--frames``, ``--crop``, ``--batch-size``, ``--video-size``, ``--dali-threads``
override a preset.

How to run
----------
    python benchmarks/train_throughput.py                      # CPU, ~1-2 min on 2 cores
    python benchmarks/train_throughput.py --quick              # smoke test: 1 round of 4 steps, no waiting
    python benchmarks/train_throughput.py --device cuda        # GPU machine (UNTESTED)

On a small shared CPU box other processes ruin the timings: the script first waits (up to
``--max-wait`` s) for the 1-minute load average to drop below ``--max-load`` and records the loads.

Writes ``benchmarks/results/train_throughput_<device>[_<tag>].csv`` (a plain CSV: one row per
(mode, round), then one summary row per mode), ``.json`` (the run's metadata) and ``.png``, and
prints the same numbers; ``--quick`` writes ``..._quick.*`` into ``benchmarks/results/quick/``
(git-ignored).
"""
import argparse
import itertools
import os
import statistics
import time

import torch

from timeclr.training import objectives, run
from timeclr.benchmarks.harness import (REPO, finish_metadata, print_meta, print_table, results_dir,
                                        run_metadata, save_figure, wait_for_quiet, write_results)
from timeclr.training.plots import pyplot
from timeclr.config import load_config
from timeclr.models import build_model
from timeclr.training.optim import build_optimizer
from timeclr.pipelines.loader.clip_source import read_videos
from timeclr.pipelines.loader.video import VideoLoader
from timeclr.synthetic.dataset import chosen_manifests, prepare_synthetic

MODES = ("in-memory", "dali", "pipeline")
POOL = 4  # batches cloned for the in-memory mode
PRESETS = {
    # None: the config's value
    "cpu": dict(backbone=None, frames=None, crop=None, batch_size=None, video_size=None, dali_threads=None,
                data_device="cpu", steps=30, warmup=5, rounds=3),
    # UNTESTED (no GPU here): the GPU preset
    "cuda": dict(backbone="r2plus1d_18", frames=16, crop=112, batch_size=32, video_size=128, dali_threads=4,
                 data_device="gpu", steps=50, warmup=10, rounds=3),
}


# ---------------------------------------------------------------------------------------------
# set-up
# ---------------------------------------------------------------------------------------------


def build_config(args):
    """synthetic_v1.yaml with the preset's / the options' model, shapes, batch and data device."""
    cfg = load_config(args.config)
    if not os.path.isabs(cfg.data.root):
        cfg.data.root = str(REPO / cfg.data.root)
    if args.backbone:
        cfg.model.backbone = args.backbone
    for view in cfg.data.views:
        if args.frames:
            view.frames = args.frames
        if args.crop:
            view.crop_size = args.crop
    if args.batch_size:
        cfg.data.batch_size = args.batch_size
    if args.dali_threads:
        cfg.data.num_threads = args.dali_threads
    if args.video_size and args.video_size != cfg.synthetic.size:
        # UNTESTED at 128 (the cuda preset): ensure_dataset renders a second synthetic set
        cfg.synthetic.size = args.video_size
        cfg.data.root = f"{cfg.data.root}_s{args.video_size}"
    cfg.data.device = args.data_device
    cfg.data.train = True
    cfg.data.drop_last = True
    if not cfg.synthetic.enabled:
        raise SystemExit(f"train_throughput: {args.config} does not use the synthetic dataset")
    cfg.data.manifest, cfg.eval.test_manifest = chosen_manifests(cfg, *prepare_synthetic(cfg, rank=0))
    return cfg


def endless(loader):
    while True:
        yield from loader


def make_step(model, optimizer, cfg, device, videos):
    """The training step of ``timeclr.train`` on a batch (fixed learning rate), with its
    non-finite check every ``train.log_every`` steps."""
    # UNTESTED (no GPU here): bf16 autocast and the Triton loss backend on CUDA
    loss_fn = objectives.contrastive(cfg.train, device)
    finite = run.FiniteCheck(videos)

    def step(batch):
        loss, _ = run.train_step(model, optimizer, loss_fn, batch, cfg.train.lr, cfg.train.grad_clip)
        finite.add(len(finite.pending), cfg.train.lr, loss, batch)
        if len(finite.pending) >= cfg.train.log_every:
            finite.check()

    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def window(next_batch, step, steps, warmup, batch_size, device):
    """``warmup`` untimed steps, then ``steps`` timed ones: clips/s, median step ms, data-wait share."""
    for _ in range(warmup):
        step(next_batch())
    sync(device)
    step_times, wait = [], 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        a = time.perf_counter()
        batch = next_batch()
        b = time.perf_counter()
        step(batch)
        step_times.append(time.perf_counter() - b)
        wait += b - a
    sync(device)
    total = time.perf_counter() - t0
    return dict(clips_per_s=steps * batch_size / total, step_ms=1e3 * statistics.median(step_times),
                wait_frac=wait / total, seconds=total)


# ---------------------------------------------------------------------------------------------
# machine load, metadata
# ---------------------------------------------------------------------------------------------


def metadata(args, cfg, model, load, n_videos):
    views = " + ".join(f"{v.kind} {v.frames}x{v.crop_size}²" for v in cfg.data.views)
    params = sum(p.numel() for p in model.parameters())
    return run_metadata({
        "threads": f"torch {torch.get_num_threads()}, DALI {cfg.data.num_threads}",
        "step": f"{cfg.model.backbone} ({params / 1e6:.2f}M params with head) | batch {cfg.data.batch_size} x ({views}) | "
                f"{cfg.train.optimizer}, NT-Xent tau {cfg.train.temperature:g} backend {cfg.train.loss_backend}, "
                f"grad clip {cfg.train.grad_clip:g}, "
                f"{'bf16 autocast' if args.device == 'cuda' and cfg.train.bf16 else 'fp32'}",
        "data": f"DALI {cfg.data.device} pipeline, {n_videos} synthetic videos {cfg.synthetic.frames} frames "
                f"{cfg.synthetic.size}², train mode (random positions + augmentation)",
        "timing": f"{args.rounds} rounds x {args.steps} steps per mode after {args.warmup} warm-up steps",
    }, cuda=args.device == "cuda", libs=("torch", "DALI"), load=load)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

COLUMNS = ["kind", "mode", "round", "clips_per_s", "clips_per_s_min", "clips_per_s_max", "step_ms", "wait_frac",
           "seconds", "ratio_vs_in_memory", "load"]


def summarise(rows):
    out = []
    base = None
    for mode in MODES:
        rs = [r for r in rows if r["mode"] == mode]
        if not rs:
            continue
        c = [r["clips_per_s"] for r in rs]
        s = dict(kind="summary", mode=mode, round="median", clips_per_s=statistics.median(c), clips_per_s_min=min(c),
                 clips_per_s_max=max(c), step_ms=statistics.median(r["step_ms"] for r in rs),
                 wait_frac=statistics.median(r["wait_frac"] for r in rs), seconds=sum(r["seconds"] for r in rs))
        if mode == "in-memory":
            base = s["clips_per_s"]
        if base:
            s["ratio_vs_in_memory"] = s["clips_per_s"] / base
        out.append(s)
    return out


def report(rows, summary, meta, args):
    print()
    print_meta(meta)
    print()
    print_table(["mode", "round", "clips/s", "step ms (median)", "data wait", "load"],
                [[r["mode"], str(r["round"]), f"{r['clips_per_s']:.1f}", f"{r['step_ms']:.1f}",
                  f"{100 * r['wait_frac']:.0f}%", f"{r['load']:.2f}"] for r in rows])
    print("\nsummary (median over rounds):")
    print_table(["mode", "clips/s", "min-max", "step ms", "data wait", "x in-memory"],
                [[s["mode"], f"{s['clips_per_s']:.1f}", f"{s['clips_per_s_min']:.1f}-{s['clips_per_s_max']:.1f}",
                  f"{s['step_ms']:.1f}" if s["mode"] != "pipeline" else "-", f"{100 * s['wait_frac']:.0f}%",
                  f"{s['ratio_vs_in_memory']:.2f}" if s.get("ratio_vs_in_memory") else "-"] for s in summary])
    ratio = next((s.get("ratio_vs_in_memory") for s in summary if s["mode"] == "dali"), None)
    if ratio:
        print(f"\ndata-bound ratio (DALI-fed / in-memory): {ratio:.2f}")

    stem = results_dir(args.out, args.quick) / f"train_throughput_{args.device}{'_' + args.tag if args.tag else ''}"
    write_results(stem, meta, COLUMNS, rows + summary)
    plot(rows, summary, meta, f"{stem}.png")
    print(f"\nwrote {stem}.csv, {stem}.json and {stem}.png")


def plot(rows, summary, meta, path):
    plt = pyplot()
    labels = {"in-memory": "step, in-memory batches", "dali": "step fed by DALI", "pipeline": "DALI pipeline alone"}
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for i, s in enumerate(summary):
        ax.bar(i, s["clips_per_s"], 0.6, color=f"C{i}", alpha=0.85)
        pts = [r["clips_per_s"] for r in rows if r["mode"] == s["mode"]]
        ax.plot([i] * len(pts), pts, "k.", ms=5)
        text = f"{s['clips_per_s']:.1f}" + (f"\n(x{s['ratio_vs_in_memory']:.2f})" if s["mode"] == "dali" else "")
        ax.text(i, s["clips_per_s_max"] * 1.02, text, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(summary)), [labels[s["mode"]] for s in summary])
    ax.set_ylabel("clips/s (median over rounds; dots: rounds)")
    ax.set_ylim(0, 1.25 * max(s["clips_per_s_max"] for s in summary))
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, "TimeCLR training step throughput", meta, path)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--config", default=str(REPO / "pipelines" / "synthetic_v1.yaml"))
    p.add_argument("--backbone", choices=("small", "r3d_18", "r2plus1d_18"))
    p.add_argument("--frames", type=int, help="frames of each view")
    p.add_argument("--crop", type=int, help="crop size of each view")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--video-size", type=int, help="side of the synthetic videos (rendered once per size)")
    p.add_argument("--dali-threads", type=int)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU; default: torch's choice)")
    p.add_argument("--steps", type=int, help="timed steps per mode and round (cpu 30, cuda 50)")
    p.add_argument("--warmup", type=int, help="untimed steps before each timed window (cpu 5, cuda 10)")
    p.add_argument("--rounds", type=int, help="alternating rounds of the modes (3)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 4 steps after 2 warm-up steps, no "
                   "waiting for a quiet machine, into benchmarks/results/quick/ (git-ignored)")
    p.add_argument("--out", help="output folder (default benchmarks/results/, --quick: benchmarks/results/quick/)")
    p.add_argument("--tag", default="", help="suffix of the output file names (default: 'quick' with --quick)")
    p.add_argument("--max-load", type=float, default=0.7, help="wait while the 1-min load average is above this")
    p.add_argument("--max-wait", type=int, default=600, help="... but at most this many seconds (0: never wait)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    quick = dict(steps=4, warmup=2, rounds=1) if args.quick else {}
    for key, value in {**PRESETS[args.device], **quick}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.quick:
        args.max_wait, args.tag = 0, args.tag or "quick"
    if min(args.steps, args.rounds) < 1 or args.warmup < 0:
        p.error("--steps and --rounds must be >= 1, --warmup >= 0")
    return args


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build_config(args)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(0)  # UNTESTED (no GPU here)

    videos = read_videos(cfg.data.manifest)
    loader = VideoLoader(cfg.data, videos, shard_id=0, num_shards=1)
    batches = endless(loader)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).to(device).train()
    optimizer = build_optimizer(model, cfg.train)
    step = make_step(model, optimizer, cfg, device, videos)
    B = cfg.data.batch_size

    # the in-memory batches: real pipeline output, cloned onto the step's device
    pool = [{"views": [v.to(device).clone() for v in b["views"]], "index": b["index"].clone()}
            for b in itertools.islice(batches, POOL)]
    shapes = [tuple(v.shape) for v in pool[0]["views"]]
    print(f"views per batch: {shapes} {pool[0]['views'][0].dtype} on {pool[0]['views'][0].device}", flush=True)
    cycle = itertools.cycle(pool)
    feeds = {
        "in-memory": (lambda: next(cycle), step),
        "dali": (lambda: next(batches), step),
        "pipeline": (lambda: next(batches), lambda batch: None),
    }

    load = wait_for_quiet(args.max_load, args.max_wait)
    meta = metadata(args, cfg, model, load, len(videos))
    print(f"timing {MODES} x {args.rounds} rounds of {args.steps} steps (+{args.warmup} warm-up) on {meta['device']}",
          flush=True)
    rows = []
    for r in range(args.rounds):
        for mode in MODES:
            next_batch, fn = feeds[mode]
            res = window(next_batch, fn, args.steps, args.warmup, B, device)
            rows.append(dict(kind="round", mode=mode, round=r, load=os.getloadavg()[0], **res))
            print(f"  round {r} {mode:<10} {res['clips_per_s']:8.1f} clips/s  step {res['step_ms']:7.1f} ms  "
                  f"wait {100 * res['wait_frac']:3.0f}%  (load {rows[-1]['load']:.2f})", flush=True)
    finish_metadata(meta)
    report(rows, summarise(rows), meta, args)


if __name__ == "__main__":
    main()
