"""Sharded datasets: a manifest's videos packed into WebDataset tar shards, for reading as large
sequential files from a network file system or object storage.

``python -m timeclr.data shard MANIFEST OUT_DIR`` runs ``write_shards``. What it writes

    OUT_DIR/shard-000000.tar     WebDataset format: plain tar files whose members are grouped
    OUT_DIR/shard-000001.tar     into samples by their name before the first dot:
    ...                              000000042.webm   the prepared video's bytes, as indexed
                                                      (``.tar`` for a frame archive)
                                     000000042.json   its record (``RECORD_KEYS``, below)
    OUT_DIR/shards.json          the index: format, version, the source manifest, the shuffle
                                 seed and shard size, the classes, and per shard its name,
                                 sample count and bytes
    OUT_DIR/shard.failures.csv   ``path,reason`` of every manifest row that could not be packed

A sample's record holds the manifest's columns (``path`` relative to the manifest's root, label,
class name, num_frames, fps, duration, width, height, codec, bytes) and where the decoder's units
sit inside the sample's bytes, so a reader selects and trims frames without opening or demuxing
anything: ``packets`` (VP8/VP9: ``offsets``, ``sizes``, ``keyframe`` of every packet, from
``gop.packet_index``) or ``jpegs`` (frame archives: ``offsets``, ``sizes`` of every frame's JPEG).

Order and sizes: the samples are the manifest's rows in a random order drawn from
``shuffle_seed`` (so a shard holds many classes and a reader's shuffle buffer mixes well), cut
into consecutive shards of at most ``shard_size`` bytes (a video larger than that gets a shard of
its own). The plan depends only on the manifest, the files' sizes and the two settings, so a rerun
plans the same shards.

Atomic and resumable: each shard is written under a temporary name and renamed when complete, so
a shard file that exists is whole; a rerun skips those and writes the rest, and ``shards.json``
appears last. A run with other settings into the same OUT_DIR is refused rather than mixing two
plans. Nothing is dropped silently: a row whose file is missing, unreadable or of another size
than indexed goes to ``shard.failures.csv`` (and is counted in the index and the summary line).

A shard set may come from elsewhere, so ``shards.json`` is data: each shard's ``name`` must be a
plain file name in OUT_DIR (``check_shard_name``), else reading the index is refused.
"""
import csv
import io
import json
import os
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from timeclr.files.atomic import atomic_open, atomic_path, write_json
from timeclr.errors import ManifestError
from timeclr.files.lock import FolderLock
from timeclr.pipelines.storage import frame_archive, gop
from timeclr.pipelines.storage.manifest import read_manifest

FORMAT, VERSION = "timeclr-shards", 1
INDEX_NAME, FAILURES_NAME = "shards.json", "shard.failures.csv"
SHARD_NAME = "shard-{:06d}.tar"
RECORD_KEYS = ("path", "label", "class_name", "num_frames", "fps", "duration", "width", "height", "codec", "bytes",
               "crc32")
DEFAULT_SHARD_SIZE = 10 ** 9


def parse_size(text) -> int:
    """'1GB', '500MB', '64KiB', '123' -> bytes. Raises ValueError naming the text."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"shard size {text!r}: expected a number of bytes such as 1GB, 500MB or 64KiB")
    base = 1024 if m.group(3) else 1000
    size = int(float(m.group(1)) * base ** " kmgt".index(m.group(2).lower() or " "))
    if size <= 0:
        raise ValueError(f"shard size {text!r} must be positive")
    return size


def record(row: dict, data: np.ndarray) -> dict:
    """The JSON record of one sample: the manifest's columns and where the decoder's units sit."""
    rec = {k: row.get(k) for k in RECORD_KEYS}
    if row.get("codec") == frame_archive.CODEC:
        index = frame_archive.read_index(row["abs_path"], data.tobytes())
        rec["jpegs"] = {"offsets": index.offsets.tolist(), "sizes": index.sizes.tolist()}
    elif row.get("codec") in (None, "", *gop.TRIMMABLE):
        packets = gop.packet_index(data)
        if packets is not None:
            rec["packets"] = {"offsets": packets.offsets.tolist(), "sizes": packets.sizes.tolist(),
                              "keyframe": packets.keyframe.astype(int).tolist()}
    return rec


def plan(rows: list, shard_size: int, shuffle_seed: int) -> tuple[list, dict]:
    """([shard: list of (sample number, row)], {path: reason} of the rows that cannot be packed)."""
    failed, usable = {}, []
    for row in rows:
        try:
            size = os.path.getsize(row["abs_path"])
        except OSError as e:
            failed[row["path"]] = f"cannot read: {e.strerror or e}"
            continue
        if row.get("bytes") and size != row["bytes"]:
            failed[row["path"]] = f"size changed since indexing: {row['bytes']} -> {size} bytes"
            continue
        usable.append((row, size))
    order = np.random.default_rng(shuffle_seed).permutation(len(usable))
    shards, current, filled = [], [], 0
    for number, k in enumerate(order.tolist()):
        row, size = usable[k]
        if current and filled + size > shard_size:
            shards.append(current)
            current, filled = [], 0
        current.append((number, row))
        filled += size
    if current:
        shards.append(current)
    return shards, failed


def write_shards(manifest, out_dir, shard_size: int = DEFAULT_SHARD_SIZE, shuffle_seed: int = 0,
                 progress: bool = True) -> dict:
    """Pack ``manifest``'s videos into WebDataset shards in ``out_dir`` (see the module
    docstring); returns the index (also written as ``out_dir/shards.json``). Raises ManifestError
    for an unreadable manifest, ValueError for settings that differ from an earlier run's."""
    from tqdm import tqdm

    rows, classes = read_manifest(manifest)
    archives = sum(r.get("codec") == frame_archive.CODEC for r in rows)
    if 0 < archives < len(rows):
        raise ValueError(f"{manifest} mixes frame archives and video files; shard them separately")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out, "shard"):  # a second shard run into out_dir refuses instead of interleaving
        settings = {"format": FORMAT, "version": VERSION, "manifest": str(Path(manifest).resolve()),
                    "shard_size": shard_size, "shuffle_seed": shuffle_seed}
        _check_settings(out, settings)
        shards, failed = plan(rows, shard_size, shuffle_seed)
        entries, written = [], 0
        bar = tqdm(total=sum(len(s) for s in shards), unit="video", desc="writing shards", disable=not progress or None)
        for k, samples in enumerate(shards):
            path = out / SHARD_NAME.format(k)
            if not path.exists():
                failed.update(_write_shard(path, samples))
                written += 1
            entries.append({"name": path.name, "samples": _count_samples(path), "bytes": path.stat().st_size})
            bar.update(len(samples))
        bar.close()
        with atomic_open(out / FAILURES_NAME, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "reason"])
            w.writerows(sorted(failed.items()))
        storage = "archive" if rows and archives == len(rows) else "video"
        index = {**settings, "classes": classes, "storage": storage, "samples": sum(e["samples"] for e in entries),
                 "failures": len(failed), "shards": entries}
        write_json(out / INDEX_NAME, index)
        print(f"sharded {manifest} -> {out}: {index['samples']} videos in {len(entries)} shards "
              f"({written} written, {len(entries) - written} already there), {len(failed)} failed"
              + (f" (listed in {out / FAILURES_NAME})" if failed else ""))
        return index


def _write_shard(path: Path, samples) -> dict:
    """Write one shard atomically; returns {path: reason} of the samples that failed meanwhile."""
    failed = {}
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for number, row in samples:
                try:
                    data = np.fromfile(row["abs_path"], dtype=np.uint8)
                    if row.get("crc32") is not None and zlib.crc32(data) != row["crc32"]:
                        failed[row["path"]] = "content changed since indexing (CRC-32 differs from the manifest's)"
                        continue
                    rec = record(row, data)
                except (OSError, frame_archive.VideoError) as e:
                    failed[row["path"]] = f"cannot read: {e}"
                    continue
                key = f"{number:09d}"
                suffix = Path(row["path"]).suffix.lower()
                _add(tar, f"{key}{suffix}", data.tobytes())
                _add(tar, f"{key}.json", json.dumps(rec).encode())
    return failed


def _add(tar, name: str, payload: bytes):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(payload), 0o644, 0
    tar.addfile(info, io.BytesIO(payload))


def _count_samples(path: Path) -> int:
    with tarfile.open(path) as tar:
        return sum(1 for m in tar.getmembers() if m.name.endswith(".json"))


def _check_settings(out: Path, settings: dict):
    index = out / INDEX_NAME
    started = out / ".shard.settings.json"
    for p in (index, started):
        if p.exists():
            with open(p) as f:
                earlier = json.load(f)
            differ = [k for k in settings if earlier.get(k) != settings[k]]
            if differ:
                raise ValueError(f"{out} holds shards written with other settings ({', '.join(differ)}: "
                                 f"{', '.join(repr(earlier.get(k)) for k in differ)}); use another OUT_DIR "
                                 "or delete it")
    write_json(started, settings)


def check_shard_name(name, index_path) -> str:
    """``name``, a shard's name from the index at ``index_path``, when it is a plain file name
    (no ``/`` or ``\\``, not ``.`` or ``..``, not empty), so it names a file beside the index and
    nothing else. Raises ManifestError naming the index and the name. ``read_index`` and the
    stream reader (``shard_stream.load_index``) both check with it."""
    if not isinstance(name, str) or name in ("", ".", "..") or re.search(r"[/\\]", name):
        raise ManifestError(f"{index_path}: shard name {name!r} is not a plain file name; a shard "
                            "lies beside its shards.json")
    return name


def read_index(out_dir) -> dict:
    """Load ``OUT_DIR/shards.json``. Raises ManifestError when it is missing, not a shard index,
    or names a shard outside OUT_DIR (``check_shard_name``)."""
    path = Path(out_dir) / INDEX_NAME
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: not a shard index ({e}); write one with python -m timeclr.data shard") from None
    if index.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a shard index (format {index.get('format')!r})")
    for shard in index.get("shards", []):
        check_shard_name(shard.get("name"), path)
    return index
