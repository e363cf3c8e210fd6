"""Benchmark: what the content checks of issue #18 cost per sample.

The source (``ClipSource``, called as DALI calls it) serves the same samples of the same prepared
sets (``prepared_sets.py``: 32 kinetics-like videos at short side 256, VP9 with a keyframe every 16
frames and frame archives at JPEG quality 60) twice, with the CRC-32 checks and without them
(the manifest's ``crc32`` column dropped; an archive's per-JPEG CRC-32s dropped from its cached
index), alternating, 5 rounds of 200 samples. A video file's check is ``zlib.crc32`` over the
whole file the source has read anyway; an archive checks only the JPEGs a sample reads.

    python benchmarks/content_check.py     # ~1 min once shard_reading.py / storage_layouts.py prepared the sets
    python benchmarks/content_check.py --quick   # 12 videos, 2 rounds of 50 samples: a smoke run

Writes ``benchmarks/results/content_check.csv`` (one row per layout) and ``content_check.json``
(the run's metadata); ``--quick`` writes into ``benchmarks/results/quick/`` (git-ignored).
"""
import argparse
import dataclasses
import os
import statistics
import time
import zlib
from types import SimpleNamespace

from timeclr.benchmarks.harness import finish_metadata, print_table, results_dir, run_metadata, write_results
from timeclr.benchmarks.pipeline_timing import data_config
from timeclr.benchmarks.prepared_sets import DEFAULT, LAYOUTS, prepared, source_folder
from timeclr.pipelines.loader.clip_source import ClipSource, read_videos
from timeclr.pipelines.storage.frame_archive import read_frames
from timeclr.pipelines.ingest.probe import file_crc32

SIZES = {False: dict(samples=200, rounds=5, videos=32), True: dict(samples=50, rounds=2, videos=12)}


def ms_per_sample(source, samples: int) -> float:
    t0 = time.perf_counter()
    for k in range(samples):
        source(SimpleNamespace(idx_in_epoch=k))
    return 1e3 * (time.perf_counter() - t0) / samples


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="12 videos, 2 rounds of 50 samples, into benchmarks/results/quick/ (git-ignored)")
    p.add_argument("--videos", type=int, help="kinetics-like videos (default 32, --quick 12; prepared once, cached)")
    p.add_argument("--rounds", type=int, help="alternating rounds, checks on and off (default 5, --quick 2)")
    p.add_argument("--samples", type=int, help="samples per source and round (default 200, --quick 50)")
    p.add_argument("--out", help="output folder (default benchmarks/results/, --quick: benchmarks/results/quick/)")
    args = p.parse_args(argv)
    for k, v in SIZES[args.quick].items():
        setattr(args, k, getattr(args, k) or v)
    return args


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    meta = run_metadata({"settings": f"{args.videos} videos, {args.rounds} rounds x {args.samples} samples, "
                                     "two-view training config, medians over rounds"})
    data = data_config("train", "cpu", 1)
    src = source_folder("kinetics-like", args.videos, 2)
    rows = []
    for layout in ("vp9-gop16", DEFAULT):
        videos = read_videos(prepared("kinetics-like", src, args.videos, layout, LAYOUTS[layout], 2)["manifest"])
        # what index writes now, whether or not these manifests and archives predate the checks
        with_crc = [dataclasses.replace(v, crc32=file_crc32(v.path)) for v in videos]
        without = [dataclasses.replace(v, crc32=None) for v in videos]
        checked = ClipSource(with_crc, list(data.views), True, 0, 8)
        plain = ClipSource(without, list(data.views), True, 0, 8)
        for s in (checked, plain):  # warm: page cache, packet layouts, archive member tables
            ms_per_sample(s, 64)
        if layout == DEFAULT:  # per-JPEG CRC-32s in the checked source's archive indexes only
            for (path, _), index in checked.indexes._items.items():  # keyed by (path, size)
                index.info["crc32"] = [zlib.crc32(j) for j in read_frames(path, range(len(index.sizes)), index)]
            for index in plain.indexes._items.values():
                index.info.pop("crc32", None)
        on, off = [], []
        for _ in range(args.rounds):
            on.append(ms_per_sample(checked, args.samples))
            off.append(ms_per_sample(plain, args.samples))
        mb = statistics.fmean(os.path.getsize(v.path) for v in videos) / 1e6
        rows.append(dict(layout=layout, mb_per_video=mb, checked_ms=statistics.median(on),
                         unchecked_ms=statistics.median(off),
                         cost_ms=statistics.median(on) - statistics.median(off),
                         per_round=" ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(on, off))))
    finish_metadata(meta, t_start)
    columns = ["layout", "mb_per_video", "checked_ms", "unchecked_ms", "cost_ms", "per_round"]
    print_table(["layout", "MB/video", "ms/sample checked", "unchecked", "cost ms", "per round (on/off)"],
                [[r["layout"], f"{r['mb_per_video']:.2f}", f"{r['checked_ms']:.2f}", f"{r['unchecked_ms']:.2f}",
                  f"{r['cost_ms']:+.2f}", r["per_round"]] for r in rows])
    csv_path, json_path = write_results(results_dir(args.out, args.quick) / "content_check", meta, columns, rows)
    print(f"wrote {csv_path} and {json_path}")


if __name__ == "__main__":
    main()
