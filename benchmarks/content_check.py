"""Benchmark: what the content checks of issue #18 cost per sample.

The source (``ClipSource``, called as DALI calls it) serves the same samples of the same prepared
sets (``prepared_sets.py``: 32 kinetics-like videos at short side 256, VP9 with a keyframe every 16
frames and frame archives at JPEG quality 60) twice, with the CRC-32 checks and without them
(the manifest's ``crc32`` column dropped; an archive's per-JPEG CRC-32s dropped from its cached
index), alternating, 5 rounds of 200 samples. A video file's check is ``zlib.crc32`` over the
whole file the source has read anyway; an archive checks only the JPEGs a sample reads.

    python benchmarks/content_check.py     # ~1 min once shard_reading.py / storage_layouts.py prepared the sets

Writes ``benchmarks/results/content_check.csv`` ('#' metadata lines, one row per layout).
"""
import dataclasses
import datetime
import os
import shlex
import statistics
import sys
import time
import zlib
from types import SimpleNamespace

from pipeline_timing import data_config
from prepared_sets import DEFAULT, LAYOUTS, prepared, source_folder
from runinfo import REPO, device_name, git_rev, print_table, write_csv
from timeclr.pipelines.clip_source import ClipSource
from timeclr.pipelines.frame_archive import read_frames
from timeclr.pipelines.probe import file_crc32
from timeclr.pipelines.video import read_videos

SAMPLES, ROUNDS, VIDEOS = 200, 5, 32


def ms_per_sample(source, samples: int) -> float:
    t0 = time.perf_counter()
    for k in range(samples):
        source(SimpleNamespace(idx_in_epoch=k))
    return 1e3 * (time.perf_counter() - t0) / samples


def main():
    data = data_config("train", "cpu", 1)
    src = source_folder("kinetics-like", VIDEOS, 2)
    rows = []
    for layout in ("vp9-gop16", DEFAULT):
        videos = read_videos(prepared("kinetics-like", src, VIDEOS, layout, LAYOUTS[layout], 2)["manifest"])
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
        for _ in range(ROUNDS):
            on.append(ms_per_sample(checked, SAMPLES))
            off.append(ms_per_sample(plain, SAMPLES))
        mb = statistics.fmean(os.path.getsize(v.path) for v in videos) / 1e6
        rows.append(dict(layout=layout, mb_per_video=mb, checked_ms=statistics.median(on),
                         unchecked_ms=statistics.median(off),
                         cost_ms=statistics.median(on) - statistics.median(off),
                         per_round=" ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(on, off))))
    meta = {"machine": device_name(False), "git": git_rev(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "python benchmarks/content_check.py " + shlex.join(sys.argv[1:]),
            "settings": f"{VIDEOS} videos, {ROUNDS} rounds x {SAMPLES} samples, two-view training config, "
                        "medians over rounds"}
    columns = ["layout", "mb_per_video", "checked_ms", "unchecked_ms", "cost_ms", "per_round"]
    print_table(["layout", "MB/video", "ms/sample checked", "unchecked", "cost ms", "per round (on/off)"],
                [[r["layout"], f"{r['mb_per_video']:.2f}", f"{r['checked_ms']:.2f}", f"{r['unchecked_ms']:.2f}",
                  f"{r['cost_ms']:+.2f}", r["per_round"]] for r in rows])
    out = REPO / "benchmarks" / "results" / "content_check.csv"
    write_csv(out, meta, columns, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
