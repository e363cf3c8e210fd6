"""Benchmark: how long ``python -m timeclr.data prepare`` takes per 1000 videos.

Runs ``prepare_tree`` (2 workers by default) on copies of
    generated   the data pipeline benchmark's 32 Kinetics-like clips (10 s, 25 fps, 340x256 VP9;
                generated once into data/bench_videos/ by benchmarks/bench_videos.py)
    real        the 11 real clips of ../shared/data/real-clips (H.264, MPEG-4, Cinepak, up to
                1080p; skipped when absent)
for each codec (h264, vp9) and short side (128, 256), and reports wall seconds per video, the
extrapolated seconds per 1000 videos, CPU seconds per video (the worker processes') and the
output size. Prints a table, writes benchmarks/results/prepare_speed.csv (plain CSV), .json (the
run's metadata) and .png.

    python benchmarks/prepare_speed.py                 # ~3 min on 2 cores
    python benchmarks/prepare_speed.py --workers 1 --sets generated
"""
import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from timeclr.benchmarks.harness import (REPO, finish_metadata, results_dir, run_metadata, save_figure,
                                        write_results)
from timeclr.training.plots import pyplot
from timeclr.pipelines.ingest.prepare import prepare_tree

REAL_CLIPS = REPO.parent / "shared" / "data" / "real-clips"


def source_sets(names, workers):
    """{name: folder of videos}; the generated set is made on first use."""
    sets = {}
    if "generated" in names:
        from timeclr.benchmarks.bench_videos import ensure_videos

        sets["generated"] = Path(ensure_videos(32, "vp9", workers)[0]).parent
    if "real" in names and REAL_CLIPS.is_dir():
        sets["real"] = REAL_CLIPS
    return sets


def time_prepare(src_dir: Path, codec: str, short_side: int, workers: int) -> dict:
    """Prepare a private copy of ``src_dir``; wall and worker CPU time, per video."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src" / "videos"  # one class folder; the original stays untouched
        shutil.copytree(src_dir, src, ignore=shutil.ignore_patterns("*.md", "*.csv", "*.txt", "*.json"))
        dst = Path(tmp) / "dst"
        load = os.getloadavg()[0]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        report = prepare_tree(src.parent, dst, codec=codec, short_side=short_side, workers=workers, progress=False)
        seconds = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        n = len(report.done)
        size = sum(p.stat().st_size for p in dst.rglob("*") if p.suffix in (".mp4", ".webm"))
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return dict(codec=codec, short_side=short_side, videos=n, failed=len(report.failed), seconds=seconds,
                s_per_video=seconds / n, s_per_1000=1000 * seconds / n, cpu_s_per_video=cpu / n,
                kb_per_video=size / n / 1e3, load_at_start=load)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sets", nargs="+", default=["generated", "real"], choices=["generated", "real"])
    p.add_argument("--out", help="output folder (default benchmarks/results/)")
    args = p.parse_args()
    meta, t_start = run_metadata({"workers": args.workers}), time.perf_counter()

    rows = []
    for name, folder in source_sets(args.sets, args.workers).items():
        for codec in ("h264", "vp9"):
            for short_side in (128, 256):
                r = {"set": name, **time_prepare(folder, codec, short_side, args.workers)}
                rows.append(r)
                print(f"{name:9s} {codec:4s} short side {short_side}: {r['videos']} videos, "
                      f"{r['s_per_video']:.2f} s/video, {r['s_per_1000']:.0f} s per 1000 videos, "
                      f"CPU {r['cpu_s_per_video']:.2f} s/video, {r['kb_per_video']:.0f} kB/video "
                      f"(load {r['load_at_start']:.2f})", flush=True)

    finish_metadata(meta, t_start)
    out = results_dir(args.out)
    write_results(out / "prepare_speed", meta, list(rows[0]), rows)

    fig, ax = pyplot().subplots(figsize=(7, 4))
    labels = [f"{r['set']}\n{r['codec']} {r['short_side']}" for r in rows]
    bars = ax.bar(range(len(rows)), [r["s_per_1000"] / 60 for r in rows],
                  color=["C0" if r["codec"] == "h264" else "C1" for r in rows])
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set(ylabel="minutes per 1000 videos")
    save_figure(fig, f"prepare, {args.workers} workers", meta, out / "prepare_speed.png")
    print(f"wrote {out / 'prepare_speed.csv'}, .json and .png")


if __name__ == "__main__":
    main()
