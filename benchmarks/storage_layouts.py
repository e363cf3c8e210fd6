"""Benchmark: how to store videos so that sparse frame access is cheap.

A segment view takes one frame from each of K segments spread over the whole video, so with a
keyframe every G frames each of its frames costs the decode of all frames since its keyframe.
This benchmark prepares the same source videos in several storage layouts and measures, for
TimeCLR's two-view training config (segment 8 + interval 8, stride 2 or 4, random resized crop
112 + flip + colour jitter, batch 8), what each layout costs and gives:

    layouts   VP9 (.webm) with a keyframe every G = 1 (intra only), 2, 4, 8, 16 (prepare's old
              default) and 25 frames (the benchmark videos' own storage: "today"), crf 32;
              frame archives (``pipelines/storage/frame_archive.py``: one JPEG per frame in a tar) at
              JPEG quality 50, 60 (prepare's default), 75 and 90. Every layout is written by ``prepare`` (``prepare_tree``)
              from the same sources at short side 256, so all carry one re-encoding.
    columns   MB per video (and / today's), prepare seconds per video (``--threads`` workers),
              PSNR against a lossless (H.264 crf 0) prepare of the same sources, frames decoded
              per frame used (``bench_videos.must_decode``: with GOP trimming DALI decodes
              exactly the frames from each selected frame's keyframe; an archive decodes each
              view frame once), the Python source's milliseconds per sample, and clips/s of
              dali       ``VideoLoader``, the library's pipeline, ``num_threads = --threads``
              baseline   the DataLoader a user writes instead, ``num_workers = --threads``:
                         PyAV with keyframe seeking on the VP9 layouts (``pyav_baseline.PyAVClips``),
                         Pillow on the archives (``PillowClips``); same frames, same augmentation
    sets      kinetics-like  the data pipeline benchmark's videos (``bench_videos.py``: 10 s,
                             25 fps, 340x256, panning texture + moving shapes + sensor noise)
              real           the eleven real clips in ``../shared/data/real-clips`` (H.264, MPEG-4,
                             Cinepak; 240p to 1080p; skipped when the folder is absent)

Timing: loaders and layouts alternate within each round, so a change in the machine's load hits
all alike; every window records the CPU share other processes took ("others"). A second table
("source workers") asks whether the per-sample Python work limits the pipeline: clips/s of the
archive and today's layout with DALI 1 or 2 threads and with the source in DALI's parallel
external source workers (1 or 2 processes) instead of the pipeline's thread.

torchcodec: the PyPI wheels (0.16, 0.17) link against the CUDA build of torch (libtorch_cuda.so,
libnvrtc.so.13) and do not load beside the pinned CPU torch, so it is not a column here.

Run (prepared layouts are cached in ``data/storage_layouts/``, git-ignored):

    python benchmarks/storage_layouts.py --quick    # kinetics-like, 12 videos, 4 layouts, ~5 min on 2 cores
    python benchmarks/storage_layouts.py            # both sets, every layout: ~10 min, +25 min to prepare the first time

Writes ``benchmarks/results/storage_layouts.csv`` (a plain CSV: one row per set and layout, then
the source-worker rows), ``.png`` and ``.json`` (the run's metadata, the rows and the targets);
``--quick`` writes ``storage_layouts_quick.*`` into ``benchmarks/results/quick/`` (git-ignored).
"""
import argparse
import os
import time
import warnings
from pathlib import Path

import av
import numpy as np
import torch

from timeclr.benchmarks.bench_videos import Keyframes, keyframe_index
from timeclr.benchmarks.harness import (finish_metadata, print_meta, print_table, results_dir, run_metadata,
                                        save_figure, write_results)
from timeclr.training.plots import pyplot
from timeclr.benchmarks.pipeline_timing import Loader, OtherLoad, data_config, time_loader
from timeclr.benchmarks.prepared_sets import DEFAULT, LAYOUTS, REAL_CLIPS, REFERENCE, prepared, source_folder
from timeclr.pipelines.storage import frame_archive
from timeclr.pipelines.loader.clip_source import ClipSource, read_videos

TODAY = "vp9-gop25"
QUICK_LAYOUTS = ("vp9-gop1", "vp9-gop4", TODAY, DEFAULT)
PSNR_VIDEOS = 4  # videos per set whose every frame is compared with the reference
SIZES = {False: dict(videos=32, rounds=2, batches=10), True: dict(videos=12, rounds=1, batches=6)}


def frames_of(path):
    """Every frame of a prepared file, (H, W, 3) uint8 RGB: PyAV, or Pillow for an archive."""
    if str(path).endswith(frame_archive.SUFFIX):
        index = frame_archive.read_index(path)
        for data in frame_archive.read_frames(path, range(len(index.sizes)), index):
            yield frame_archive.decode_jpeg(data)
    else:
        with av.open(str(path)) as c:
            for frame in c.decode(video=0):
                yield frame.to_ndarray(format="rgb24")


def psnr(path, reference) -> float:
    """PSNR (dB) of every frame of ``path`` against ``reference``, from the pooled squared error."""
    se, count = 0.0, 0
    for a, b in zip(frames_of(path), frames_of(reference)):
        se += float(np.sum((a.astype(np.float64) - b) ** 2))
        count += a.size
    return 10 * np.log10(255.0 ** 2 / (se / count))


def keyframes_of(video) -> Keyframes:
    if video.codec == frame_archive.CODEC:  # every frame stands alone
        n = video.num_frames
        return Keyframes(list(range(n)), list(range(n)), n, 0)
    return keyframe_index(video.path)


def source_ms_per_sample(videos, data, samples=200) -> float:
    """Milliseconds of the library's per-sample Python source (read, select, trim, parameters)."""
    source = ClipSource(videos, list(data.views), data.train, data.seed, data.batch_size)

    class Info:
        idx_in_epoch = 0

    info = Info()
    for k in range(min(len(videos), samples)):  # warm: the per-file caches (layouts, tar indexes)
        info.idx_in_epoch = k
        source(info)
    t0 = time.perf_counter()
    for k in range(samples):
        info.idx_in_epoch = k
        source(info)
    return 1e3 * (time.perf_counter() - t0) / samples


# ---------------------------------------------------------------------------------------------
# the parallel-source experiment
# ---------------------------------------------------------------------------------------------


def parallel_source_rate(videos, data, workers: int, batches: int) -> float:
    """Clips/s of the library's pipeline (``build_pipeline``: decode, views, augmentation) with
    the source in ``workers`` DALI parallel external source processes (0: in the pipeline's
    thread, as the library runs it)."""
    from timeclr.pipelines.loader.video import build_pipeline

    source = ClipSource(videos, list(data.views), data.train, data.seed, data.batch_size)
    pipe = build_pipeline(data, source, source_workers=workers)
    pipe.build()
    for _ in range(2):
        pipe.run()
    t0 = time.perf_counter()
    for _ in range(batches):
        pipe.run()
    rate = batches * data.batch_size / (time.perf_counter() - t0)
    del pipe
    return rate


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------


def measure(args) -> tuple[list, list]:
    sets = ["kinetics-like"] + (["real"] if not args.quick and REAL_CLIPS.is_dir() else [])
    layouts = QUICK_LAYOUTS if args.quick else tuple(LAYOUTS)
    data = data_config("train", "cpu", args.threads)
    found = {}  # (set, layout) -> row, with its videos and keyframes
    for set_name in sets:
        src = source_folder(set_name, args.videos, args.threads)
        ref = prepared(set_name, src, args.videos, "reference", REFERENCE, args.threads)
        ref_videos = {Path(v.path).stem: v.path for v in read_videos(ref["manifest"])}
        for layout in layouts:
            p = prepared(set_name, src, args.videos, layout, LAYOUTS[layout], args.threads)
            videos = read_videos(p["manifest"])
            for i, v in enumerate(videos):
                v.label = i % 10
            keyframes = [keyframes_of(v) for v in videos]
            checked = [v for v in videos if Path(v.path).stem in ref_videos][:PSNR_VIDEOS]
            found[(set_name, layout)] = dict(
                set=set_name, layout=layout, videos=len(videos), frames=float(np.mean([v.num_frames for v in videos])),
                mb_per_video=float(np.mean([os.path.getsize(v.path) for v in videos])) / 1e6,
                prepare_s_per_video=p["prepare_s_per_video"],
                psnr_db=float(np.mean([psnr(v.path, ref_videos[Path(v.path).stem]) for v in checked])),
                source_ms=source_ms_per_sample(videos, data),
                _videos=videos, _keyframes=keyframes, _windows={"dali": [], "baseline": []})
            print(f"  {set_name} {layout}: {len(videos)} videos, {found[(set_name, layout)]['mb_per_video']:.2f} MB "
                  f"each, PSNR {found[(set_name, layout)]['psnr_db']:.1f} dB", flush=True)

    for r in range(args.rounds):
        for row in found.values():
            baseline = "pillow" if row["layout"].startswith("jpeg") else "pyav"
            for kind, slot in (("dali", "dali"), (baseline, "baseline")):
                loader = Loader(kind, data, row["_videos"], row["_keyframes"], args.threads, False)
                try:
                    m = time_loader(loader, args.threads, args.batches, row["_keyframes"],
                                    desc=f"round {r + 1}/{args.rounds} {row['set']} {row['layout']} {kind}")
                finally:
                    loader.close()
                row["_windows"][slot].append(m)
                row["baseline"] = baseline
                print(f"  round {r + 1}: {row['set']:13s} {row['layout']:10s} {kind:6s} "
                      f"{m['clips'] / m['seconds']:6.2f} clips/s (others {m['others']:.0%})", flush=True)

    rows = []
    for row in found.values():
        d, b = row["_windows"]["dali"], row["_windows"]["baseline"]
        today = found.get((row["set"], TODAY))
        rows.append({k: v for k, v in row.items() if not k.startswith("_")} | dict(
            # an archive decodes every view frame once, a frame two views share included
            decoded_per_used=(1.0 if row["layout"].startswith("jpeg")
                              else sum(m["need"] for m in d) / sum(m["selected"] for m in d)),
            dali_clips_per_s=sum(m["clips"] for m in d) / sum(m["seconds"] for m in d),
            baseline_clips_per_s=sum(m["clips"] for m in b) / sum(m["seconds"] for m in b),
            others=max(m["others"] for m in d + b),
            per_round=" ".join(f"{m['clips'] / m['seconds']:.1f}/{n['clips'] / n['seconds']:.1f}"
                               for m, n in zip(d, b)),
            bytes_vs_today=(row["mb_per_video"] / today["mb_per_video"]) if today else None))
    for row in rows:
        same = [r for r in rows if r["set"] == row["set"]]
        today = next((r for r in same if r["layout"] == TODAY), None)
        row["dali_vs_today"] = row["dali_clips_per_s"] / today["dali_clips_per_s"] if today else None
        row["dali_vs_best_other"] = row["dali_clips_per_s"] / max(r["baseline_clips_per_s"] for r in same)

    workers_rows = []
    if not args.no_workers:
        for layout in ("jpeg-q75", TODAY):
            row = found.get(("kinetics-like", layout))
            if row is None:
                continue
            for threads in (1, 2):
                for workers in (0, 1, 2):
                    d = data_config("train", "cpu", threads)
                    load = OtherLoad()
                    load.start()
                    rate = parallel_source_rate(row["_videos"], d, workers, args.batches)
                    workers_rows.append(dict(set="kinetics-like", layout=layout, dali_threads=threads,
                                             source_workers=workers, clips_per_s=rate, others=load.stop()))
                    print(f"  {layout}: {threads} DALI threads, {workers} source workers: {rate:.1f} clips/s",
                          flush=True)
    return rows, workers_rows


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

COLUMNS = [  # field, header, format
    ("set", "set", "{}"), ("layout", "layout", "{}"), ("videos", "videos", "{}"),
    ("mb_per_video", "MB/video", "{:.2f}"), ("bytes_vs_today", "x today's bytes", "{:.2f}"),
    ("prepare_s_per_video", "prepare s/video", "{:.2f}"), ("psnr_db", "PSNR dB", "{:.1f}"),
    ("decoded_per_used", "decoded/used", "{:.2f}"), ("source_ms", "source ms/sample", "{:.2f}"),
    ("dali_clips_per_s", "dali clips/s", "{:.1f}"), ("baseline", "baseline", "{}"),
    ("baseline_clips_per_s", "baseline clips/s", "{:.1f}"), ("dali_vs_today", "dali / today", "{:.2f}"),
    ("dali_vs_best_other", "dali / best other", "{:.2f}"), ("others", "others' CPU", "{:.0%}"),
    ("per_round", "dali/baseline per round", "{}"),
]
WORKER_COLUMNS = [("set", "set", "{}"), ("layout", "layout", "{}"), ("dali_threads", "DALI threads", "{}"),
                  ("source_workers", "source workers", "{}"), ("clips_per_s", "clips/s", "{:.1f}"),
                  ("others", "others' CPU", "{:.0%}")]


def fmt(row, columns):
    return [("" if row.get(f) is None else f_.format(row[f])) for f, _, f_ in columns]


def plot(rows, meta, path):
    """Left: dali and baseline clips/s against MB per video, one point per layout. Right: frames
    decoded per frame used per layout."""
    plt = pyplot()
    sets = list(dict.fromkeys(r["set"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for s, marker in zip(sets, "os"):
        rs = [r for r in rows if r["set"] == s]
        axes[0].plot([r["mb_per_video"] for r in rs], [r["dali_clips_per_s"] for r in rs], marker, color="C2",
                     ls="none", label=f"{s}: dali")
        axes[0].plot([r["mb_per_video"] for r in rs], [r["baseline_clips_per_s"] for r in rs], marker, color="C0",
                     mfc="none", ls="none", label=f"{s}: baseline (PyAV / Pillow)")
        for r in rs:
            axes[0].annotate(r["layout"], (r["mb_per_video"], r["dali_clips_per_s"]), fontsize=7,
                             xytext=(3, 3), textcoords="offset points")
    axes[0].set(xlabel="MB per video", ylabel="clips/s (training config)", xscale="log",
                title="clips/s against disk cost")
    axes[0].legend(fontsize=7)
    layouts = list(dict.fromkeys(r["layout"] for r in rows))
    x = np.arange(len(layouts))
    width = 0.8 / len(sets)
    for j, s in enumerate(sets):
        by = {r["layout"]: r for r in rows if r["set"] == s}
        bars = axes[1].bar(x + (j - (len(sets) - 1) / 2) * width,
                           [by[l]["decoded_per_used"] if l in by else 0 for l in layouts], width, label=s)
        axes[1].bar_label(bars, fmt="%.1f", fontsize=7)
    axes[1].axhline(1.5, color="k", ls=":", lw=1, label="target 1.5")
    axes[1].set_xticks(x, layouts, rotation=30, fontsize=8)
    axes[1].set(ylabel="frames decoded per frame used", title="decode work per shown frame")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    save_figure(fig, "storage layouts", meta, path)


def targets(rows) -> dict:
    """The targets, for prepare's default layout on each set: >= 3x today's clips/s at <= 3x its
    bytes, >= 2x the best other loader of the set, <= 1.5 frames decoded per frame used."""
    return {s: _targets(next(r for r in rows if r["set"] == s and r["layout"] == DEFAULT))
            for s in dict.fromkeys(r["set"] for r in rows) if any(r["layout"] == DEFAULT for r in rows)}


def _targets(best) -> dict:
    return {"layout": best["layout"], "dali_vs_today": best["dali_vs_today"], "bytes_vs_today": best["bytes_vs_today"],
            "dali_vs_best_other": best["dali_vs_best_other"], "decoded_per_used": best["decoded_per_used"],
            "met": {"3x today's clips/s at <= 3x bytes": bool(best["dali_vs_today"] and best["dali_vs_today"] >= 3
                                                             and best["bytes_vs_today"] <= 3),
                    "2x the best other loader": best["dali_vs_best_other"] >= 2,
                    "<= 1.5 frames decoded per used": best["decoded_per_used"] <= 1.5}}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="kinetics-like set only, 12 videos, 4 layouts, 1 round, "
                   "into benchmarks/results/quick/ (git-ignored)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="DALI threads = DataLoader workers = prepare workers (default: the cores)")
    p.add_argument("--videos", type=int, help="kinetics-like videos (default 32, --quick 12)")
    p.add_argument("--rounds", type=int, help="alternating rounds (default 2, --quick 1)")
    p.add_argument("--batches", type=int, help="timed batches per loader and round (default 10, --quick 6)")
    p.add_argument("--no-workers", action="store_true", help="skip the source-workers table")
    p.add_argument("--out", help="output folder (default benchmarks/results/, --quick: benchmarks/results/quick/)")
    args = p.parse_args()
    for k, v in SIZES[args.quick].items():
        setattr(args, k, getattr(args, k) or v)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="nvidia.dali")
    t_start = time.perf_counter()
    meta = run_metadata({
        "threads": args.threads,
        "config": "train: segment 8 + interval 8 (stride 2/4), crop 112, flip + jitter, batch 8",
        "timing": f"{args.rounds} rounds x {args.batches} batches after {args.threads} warm-up batches",
    }, libs=("torch", "DALI", "PyAV"))
    rows, workers_rows = measure(args)
    finish_metadata(meta, t_start)

    print()
    print_meta(meta)
    print()
    print_table([h for _, h, _ in COLUMNS], [fmt(r, COLUMNS) for r in rows])
    if workers_rows:
        print("\nsource workers (DALI's parallel external source; 0 = in the pipeline's thread, as the library runs it):")
        print_table([h for _, h, _ in WORKER_COLUMNS], [fmt(r, WORKER_COLUMNS) for r in workers_rows])
    summary = targets(rows)
    for set_name, t in summary.items():
        print(f"\ntargets ({set_name}, {t['layout']}, prepare's default): {t['dali_vs_today']:.2f}x today's clips/s "
              f"at {t['bytes_vs_today']:.2f}x its bytes; {t['dali_vs_best_other']:.2f}x the best other loader; "
              f"{t['decoded_per_used']:.2f} frames decoded per frame used; met: {t['met']}")

    stem = results_dir(args.out, args.quick) / f"storage_layouts{'_quick' if args.quick else ''}"
    fields = [c for c, _, _ in COLUMNS] + ["frames", "dali_threads", "source_workers", "clips_per_s"]
    write_results(stem, meta, fields, rows + workers_rows,
                  sidecar={"targets": summary, "rows": rows, "source_workers": workers_rows})
    plot(rows, meta, f"{stem}.png")
    print(f"\nwrote {stem}.csv, {stem}.png and {stem}.json")


if __name__ == "__main__":
    main()
