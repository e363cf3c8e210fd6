"""Benchmark: WebDataset shards vs one file per video, from local disk and over HTTP, and what
feeding 8 x 8 H200s would take.

The same prepared videos (``prepared_sets.py``: the kinetics-like set at short side 256, in
prepare's default layout, frame archives at JPEG quality 60, and in VP9 with a keyframe every 16
frames) are read four ways by the training pipeline (``VideoLoader``, TimeCLR's two-view config:
segment 8 + interval 8, random resized crop 112, flip, colour jitter, batch 8):

    files         the manifest: one file per video, read where the views need it
                  (GOP trimming for VP9, one pread per JPEG for an archive)
    shards-local  ``python -m timeclr.data shard`` of the same manifest, ``data.shards=FOLDER``
    shards-http   the same shards from ``python -m http.server`` in another process on
                  127.0.0.1, ``data.shards=http://127.0.0.1:PORT``
    (reading only) the bytes without decoding: every file read whole, or ``ShardStream``
                  over one epoch, locally and over HTTP: one reader's ceiling, in MB/s

Loaders alternate within each round (the machine's load hits all alike), and every window
records the CPU share other processes took. "Local disk" here is the page cache: the set is far
smaller than this machine's memory, so these are reads from memory, the best case for files.

On paper (``feeding``): the GPU side is an estimate until a GPU run measures it. torch's
``FlopCounterMode`` counts R(2+1)D-18's forward FLOPs for one 16x112x112 clip; a training step
costs about 3x the forward (forward + backward), times 2 views; an H200 gives 989 dense bf16
TFLOP/s, of which ``--mfu`` (default 0.3) is assumed. From clips/s per GPU and the measured
bytes per sample follow the bytes/s per GPU, node (8 GPUs) and job (64 GPUs), the reader threads
per GPU at the measured rate of one reader, and what a shard's first-byte latency costs at a
given shard size.

Run (the prepared set is cached in ``data/storage_layouts/``, git-ignored):

    python benchmarks/shard_reading.py --quick   # 12 videos, archives only: ~30 s on 2 cores (+1 min to prepare)
    python benchmarks/shard_reading.py           # 32 videos, both layouts: ~2 min (+3 min to prepare)

Writes ``benchmarks/results/shard_reading.csv`` (a plain CSV, one row per layout and loader),
``.png`` and ``.json`` (the run's metadata, the rows and the feeding estimate); ``--quick`` writes
``shard_reading_quick.*`` into ``benchmarks/results/quick/`` (git-ignored).
"""
import argparse
import contextlib
import copy
import json
import math
import os
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from tqdm import tqdm

from timeclr.benchmarks.harness import (finish_metadata, print_table, results_dir, run_metadata, save_figure,
                                        write_results)
from timeclr.training.plots import pyplot
from timeclr.benchmarks.pipeline_timing import OtherLoad, data_config
from timeclr.benchmarks.prepared_sets import CACHE, DEFAULT, LAYOUTS, prepared, source_folder
from timeclr.pipelines.loader.clip_source import read_videos
from timeclr.pipelines.storage.shard_stream import ShardStream
from timeclr.pipelines.storage.shards import parse_size, write_shards
from timeclr.pipelines.loader.video import VideoLoader

SIZES = {False: dict(videos=32, rounds=3, batches=12, layouts=(DEFAULT, "vp9-gop16")),
         True: dict(videos=12, rounds=2, batches=6, layouts=(DEFAULT,))}
LOADERS = ("files", "shards-local", "shards-http")
H200_BF16_TFLOPS = 989.0  # dense, NVIDIA's H200 datasheet
GPUS_PER_NODE, NODES = 8, 8


# ---------------------------------------------------------------------------------------------
# the shard set and its HTTP server
# ---------------------------------------------------------------------------------------------


def shard_set(manifest, layout: str, n: int, shard_size: int):
    """Shards of ``manifest`` (cached beside the prepared set): the folder."""
    out = CACHE / "kinetics-like" / f"n{n}" / f"{layout}-shards-{shard_size}"
    write_shards(manifest, out, shard_size=shard_size, progress=False)
    return out


@contextlib.contextmanager
def http_server(folder):
    """``python -m http.server`` serving ``folder`` on a free localhost port: the base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # until it accepts
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


# ---------------------------------------------------------------------------------------------
# timers
# ---------------------------------------------------------------------------------------------


def loader_rate(data, videos, warmup: int, batches: int, desc: str) -> dict:
    """clips/s of ``VideoLoader`` (``videos`` for files, ``data.shards`` otherwise) after warm-up."""
    loader = VideoLoader(data, videos, shard_id=0, num_shards=1)

    def endless(epochs):
        while True:
            yield from epochs

    it = endless(loader)
    try:
        for _ in range(warmup):
            next(it)
        load = OtherLoad()
        load.start()
        t0 = time.perf_counter()
        clips = 0
        for _ in tqdm(range(batches), desc=desc, leave=False, disable=None):
            clips += len(next(it)["label"])
        seconds = time.perf_counter() - t0
        return dict(clips=clips, seconds=seconds, others=load.stop())
    finally:
        it.close()  # frees the pipeline's threads


def read_rate(what, videos=None) -> dict:
    """One reader's bytes/s without decoding: every file whole, or one epoch of a shard stream."""
    t0 = time.perf_counter()
    if videos is not None:
        nbytes, samples = 0, 0
        for v in videos:
            with open(v.path, "rb") as f:
                nbytes += len(f.read())
            samples += 1
    else:
        stream = ShardStream(what, 0, 1, seed=0, buffer=64)
        nbytes = samples = 0
        for sample in stream.samples(0):
            nbytes += len(sample.data)
            samples += 1
    seconds = time.perf_counter() - t0
    return dict(mb_per_s=nbytes / 1e6 / seconds, samples_per_s=samples / seconds, mb_per_sample=nbytes / 1e6 / samples)


# ---------------------------------------------------------------------------------------------
# on paper: feeding 8 x 8 H200s
# ---------------------------------------------------------------------------------------------


def r2plus1d_forward_gflops(frames: int = 16, size: int = 112) -> float:
    """Forward GFLOPs of R(2+1)D-18 for one clip, counted by torch (2 FLOPs per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    from timeclr.models import build_backbone

    net, _ = build_backbone("r2plus1d_18")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, frames, size, size))
    return counter.get_total_flops() / 1e9


def feeding(rows, mfu: float, shard_mb: float, latency_ms: float) -> dict:
    """Bytes and readers per GPU, node and job to feed 8 x 8 H200s (see the module docstring)."""
    fwd = r2plus1d_forward_gflops()
    step_gflops_per_video = 3 * 2 * fwd  # forward + backward (~2x forward), two views
    clips_per_gpu = H200_BF16_TFLOPS * 1e3 * mfu / step_gflops_per_video
    out = {"r2plus1d_18_forward_gflops_16x112": fwd, "train_gflops_per_video": step_gflops_per_video,
           "assumed_mfu": mfu, "h200_bf16_tflops": H200_BF16_TFLOPS, "videos_per_s_per_gpu": clips_per_gpu,
           "gpus": GPUS_PER_NODE * NODES, "shard_mb": shard_mb, "first_byte_latency_ms": latency_ms, "layouts": {}}
    for layout in sorted({r["layout"] for r in rows}):
        reads = {r["loader"]: r for r in rows if r["layout"] == layout}
        mb = reads["read-shards-local"]["mb_per_sample"]
        per_gpu = clips_per_gpu * mb  # MB/s
        reader = reads["read-shards-http"]["mb_per_s"]  # one Python reader over HTTP on this machine
        seconds_per_shard = shard_mb / reader
        out["layouts"][layout] = dict(
            mb_per_video=mb, mb_per_s_per_gpu=per_gpu, gbit_per_s_per_node=per_gpu * GPUS_PER_NODE * 8 / 1e3,
            gb_per_s_job=per_gpu * GPUS_PER_NODE * NODES / 1e3, one_reader_mb_per_s=reader,
            readers_per_gpu=math.ceil(per_gpu / reader),
            latency_overhead=(latency_ms / 1e3) / (seconds_per_shard + latency_ms / 1e3),
            cpu_decode_clips_per_s_today=reads["files"]["clips_per_s"])
    return out


# ---------------------------------------------------------------------------------------------
# the measurement
# ---------------------------------------------------------------------------------------------


def measure(args) -> list:
    src = source_folder("kinetics-like", args.videos, args.threads)
    base = data_config("train", "cpu", args.threads)
    sets = {}
    for layout in args.layouts:
        p = prepared("kinetics-like", src, args.videos, layout, LAYOUTS[layout], args.threads)
        videos = read_videos(p["manifest"])
        sets[layout] = dict(manifest=p["manifest"], videos=videos,
                            shards=shard_set(p["manifest"], layout, args.videos, parse_size(args.shard_size)))
    rows = []
    with contextlib.ExitStack() as stack:
        for layout, s in sets.items():
            s["url"] = stack.enter_context(http_server(s["shards"]))
            for loader, what, videos in (("read-files", None, s["videos"]), ("read-shards-local", str(s["shards"]), None),
                                         ("read-shards-http", s["url"], None)):
                rows.append(dict(layout=layout, loader=loader, videos=len(s["videos"]), **read_rate(what, videos)))
        windows = {(layout, kind): [] for layout in sets for kind in LOADERS}
        for r in range(args.rounds):
            for layout, s in sets.items():
                for kind in LOADERS:
                    data = copy.deepcopy(base)
                    data.shards = {"files": "", "shards-local": str(s["shards"]), "shards-http": s["url"]}[kind]
                    m = loader_rate(data, None if data.shards else s["videos"], args.threads, args.batches,
                                    desc=f"round {r + 1}/{args.rounds} {layout} {kind}")
                    windows[(layout, kind)].append(m)
                    print(f"  round {r + 1}: {layout:10s} {kind:13s} {m['clips'] / m['seconds']:6.1f} clips/s "
                          f"(others {m['others']:.0%})", flush=True)
    for (layout, kind), ms in windows.items():
        rates = [m["clips"] / m["seconds"] for m in ms]
        rows.append(dict(layout=layout, loader=kind, videos=len(sets[layout]["videos"]),
                         clips_per_s=sum(m["clips"] for m in ms) / sum(m["seconds"] for m in ms),
                         clips_per_s_min=min(rates), clips_per_s_max=max(rates),
                         others=max(m["others"] for m in ms), per_round=" ".join(f"{x:.1f}" for x in rates)))
    for row in rows:
        files = next((r for r in rows if r["layout"] == row["layout"] and r["loader"] == "files"), None)
        if "clips_per_s" in row and files:
            row["vs_files"] = row["clips_per_s"] / files["clips_per_s"]
    for layout, s in sets.items():
        index = json.loads((s["shards"] / "shards.json").read_text())
        for row in rows:
            if row["layout"] == layout:
                row["shards"] = len(index["shards"])
    return rows


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

COLUMNS = [("layout", "layout", "{}"), ("loader", "loader", "{}"), ("videos", "videos", "{}"),
           ("shards", "shards", "{}"), ("clips_per_s", "clips/s", "{:.1f}"),
           ("clips_per_s_min", "min", "{:.1f}"), ("clips_per_s_max", "max", "{:.1f}"),
           ("vs_files", "/ files", "{:.2f}"), ("mb_per_s", "read MB/s", "{:.0f}"),
           ("samples_per_s", "read samples/s", "{:.0f}"), ("mb_per_sample", "MB/sample", "{:.2f}"),
           ("others", "others' CPU", "{:.0%}"), ("per_round", "per round", "{}")]


def fmt(row, columns):
    return [("" if row.get(k) is None else f.format(row[k])) for k, _, f in columns]


def plot(rows, meta, path):
    plt = pyplot()
    timed = [r for r in rows if "clips_per_s" in r]
    layouts = sorted({r["layout"] for r in timed})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(LOADERS)
    for k, kind in enumerate(LOADERS):
        rs = [next(r for r in timed if r["layout"] == layout and r["loader"] == kind) for layout in layouts]
        x = np.arange(len(layouts)) + k * width
        axes[0].bar(x, [r["clips_per_s"] for r in rs], width, label=kind,
                    yerr=[[r["clips_per_s"] - r["clips_per_s_min"] for r in rs],
                          [r["clips_per_s_max"] - r["clips_per_s"] for r in rs]], capsize=3)
    axes[0].set_xticks(np.arange(len(layouts)) + width, layouts)
    axes[0].set_ylabel("clips/s (training pipeline, bars: min-max over rounds)")
    axes[0].legend(fontsize=7)
    reads = [r for r in rows if r["loader"].startswith("read-")]
    kinds = ("read-files", "read-shards-local", "read-shards-http")
    for k, kind in enumerate(kinds):
        rs = [next(r for r in reads if r["layout"] == layout and r["loader"] == kind) for layout in layouts]
        axes[1].bar(np.arange(len(layouts)) + k * width, [r["mb_per_s"] for r in rs], width, label=kind)
    axes[1].set_xticks(np.arange(len(layouts)) + width, layouts)
    axes[1].set_ylabel("MB/s, one reader, no decoding")
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=7)
    save_figure(fig, "Shards vs one file per video", meta, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="12 videos, frame archives only, 2 rounds, into "
                   "benchmarks/results/quick/ (git-ignored)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="DALI threads")
    p.add_argument("--videos", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--batches", type=int, help="timed batches per loader and round")
    p.add_argument("--shard-size", default="16MB", help="shard size for the benchmark set (default 16MB: "
                                                         "several shards from a small set)")
    p.add_argument("--mfu", type=float, default=0.3, help="assumed share of the H200's bf16 peak (paper estimate)")
    p.add_argument("--paper-shard-mb", type=float, default=1000.0, help="shard size of the paper estimate, MB")
    p.add_argument("--latency-ms", type=float, default=50.0, help="first-byte latency per shard (object storage)")
    p.add_argument("--out", help="output folder (default benchmarks/results/, --quick: benchmarks/results/quick/)")
    args = p.parse_args()
    for k, v in SIZES[args.quick].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    warnings.simplefilter("ignore", UserWarning)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    meta = run_metadata({"settings": f"{args.videos} videos, {args.rounds} rounds x {args.batches} batches of 8, "
                                     f"{args.threads} DALI threads, shards of {args.shard_size}"},
                        libs=("torch", "DALI"))
    rows = measure(args)
    estimate = feeding(rows, args.mfu, args.paper_shard_mb, args.latency_ms)
    finish_metadata(meta, t_start)
    print_table([h for _, h, _ in COLUMNS], [fmt(r, COLUMNS) for r in rows])
    print(f"\non paper, {NODES} x {GPUS_PER_NODE} H200 (R(2+1)D-18, 2 views of 16x112x112, "
          f"{estimate['train_gflops_per_video']:.0f} GFLOP per video and step, MFU {args.mfu:.0%} assumed): "
          f"{estimate['videos_per_s_per_gpu']:.0f} videos/s per GPU")
    for layout, e in estimate["layouts"].items():
        print(f"  {layout}: {e['mb_per_video']:.2f} MB/video -> {e['mb_per_s_per_gpu']:.0f} MB/s per GPU, "
              f"{e['gbit_per_s_per_node']:.1f} Gbit/s per node, {e['gb_per_s_job']:.1f} GB/s for the job; "
              f"{e['readers_per_gpu']} reader(s) per GPU at {e['one_reader_mb_per_s']:.0f} MB/s each; "
              f"{args.latency_ms:.0f} ms first-byte latency per {args.paper_shard_mb:.0f} MB shard costs "
              f"{e['latency_overhead']:.1%} of a reader's time")
    stem = results_dir(args.out, args.quick) / ("shard_reading" + ("_quick" if args.quick else ""))
    write_results(stem, meta, [k for k, _, _ in COLUMNS], rows, sidecar={"rows": rows, "feeding": estimate})
    plot(rows, meta, f"{stem}.png")
    print(f"wrote {stem}.csv, .png, .json")


if __name__ == "__main__":
    main()
