"""The benchmarks' prepared video sets: source videos run through ``prepare`` in a given storage
layout and indexed, cached in ``data/storage_layouts/`` (git-ignored) and shared by
``storage_layouts.py`` and ``shard_reading.py``.

    sets      kinetics-like  ``bench_videos.py``'s generated videos (10 s, 25 fps, 340x256)
              real           the eleven real clips in ``../shared/data/real-clips``
    layouts   ``LAYOUTS``: VP9 with a keyframe every G frames, or frame archives at JPEG quality q,
              all at short side 256; ``REFERENCE`` is a lossless H.264 prepare of the same frames
"""
import json
import time
from pathlib import Path

from timeclr.files.atomic import write_json
from timeclr.benchmarks.bench_videos import ensure_videos
from timeclr.benchmarks.harness import REPO
from timeclr.pipelines.storage import frame_archive
from timeclr.pipelines.ingest.index import index_tree
from timeclr.pipelines.ingest.prepare import prepare_tree

CACHE = REPO / "data" / "storage_layouts"
REAL_CLIPS = REPO.parent / "shared" / "data" / "real-clips"
SHORT_SIDE = 256
LAYOUTS = {  # name -> prepare_tree arguments
    **{f"vp9-gop{g}": dict(codec="vp9", gop=g) for g in (1, 2, 4, 8, 16, 25)},
    **{f"jpeg-q{q}": dict(codec="jpeg", crf=q) for q in (50, 60, 75, 90)},
}
DEFAULT = f"jpeg-q{frame_archive.DEFAULT_QUALITY}"  # what prepare writes by default
REFERENCE = dict(codec="h264", gop=1, crf=0)  # lossless H.264 of the same resized frames: the PSNR reference


def source_folder(name: str, n: int, threads: int) -> Path:
    """A folder of source videos for set ``name``, linked into one class folder (``index`` wants
    ROOT/<class>/): the real clips lie flat in theirs."""
    src = CACHE / name / ("src" if name == "real" else f"src{n}")
    if not src.exists():
        tmp = src.with_name(src.name + ".tmp")
        (tmp / "clips").mkdir(parents=True, exist_ok=True)
        sources = sorted(p for p in REAL_CLIPS.iterdir() if p.suffix != ".md") if name == "real" \
            else ensure_videos(n, "vp9", threads)
        for p in sources:
            link = tmp / "clips" / p.name
            if not link.exists():
                link.symlink_to(p)
        tmp.rename(src)
    return src


def prepared(set_name: str, src: Path, n: int, layout: str, args: dict, threads: int) -> dict:
    """Prepare ``src`` in one layout (cached) and index it: {manifest, prepare_s_per_video}."""
    dst = CACHE / set_name / ("prepared" if set_name == "real" else f"n{n}") / layout
    timing = dst / "prepare_timing.json"
    if not timing.exists():
        t0 = time.perf_counter()
        prepare_tree(src, dst, short_side=SHORT_SIDE, workers=threads, **args)
        seconds = time.perf_counter() - t0
        count = sum(1 for p in dst.rglob("*") if p.suffix in (".webm", ".mp4", ".tar"))
        write_json(timing, {"seconds": seconds, "videos": count, "threads": threads})
    with open(timing) as f:
        t = json.load(f)
    manifest = dst / "manifest.csv"
    if not manifest.exists():
        # the lossless H.264 reference is only read by PyAV: probe it for the GPU's codec list
        index_tree(dst, manifest, device="cpu" if args["codec"] != "h264" else "gpu", workers=threads,
                   allow_vfr=True)
    return {"manifest": manifest, "prepare_s_per_video": t["seconds"] / max(1, t["videos"]),
            "prepare_threads": t["threads"]}
