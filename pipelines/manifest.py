"""Video manifest: scan a folder-per-class tree, probe every video with PyAV, write CSVs.

The DALI pipelines read their videos from a manifest instead of walking folders, so that every
file they see has been opened, fully decoded and measured once, and files DALI cannot use are
set aside with a reason instead of failing mid-epoch. ``python -m timeclr.data index`` runs
``index_tree``; pipelines load the result with ``read_manifest``.

Input tree
    ``ROOT/<class>/<video>``: a video's class is its parent folder's path relative to ROOT
    (POSIX form, so a nested ``ROOT/a/b/x.mp4`` has class ``a/b``). Candidates are the regular,
    non-hidden files (name not starting with ``.``, not inside a hidden folder) whose extension
    is one of ``VIDEO_EXTENSIONS``, case-insensitive. Every candidate ends up in exactly one of
    the manifest or the rejects; a candidate sitting directly in ROOT has no class and is
    rejected (``no class folder``). Labels are 0..C-1 in sorted class-name order over the class
    folders that hold candidates, whether or not their videos are accepted, so labels do not
    depend on which files a device can decode.

    That is ``layout="folder"``. The other layouts (``kinetics``, ``ucf101``, ``hmdb51``, ``ssv2``:
    ``timeclr.pipelines.layouts``) take the classes, labels and the videos of one split from the
    dataset's annotation files instead: a candidate is in the manifest or the rejects if an
    entry of the split names it, and left out otherwise; an entry that names no file is rejected
    as ``missing`` (its path: the entry's key, the path without extension the annotations give).

Outputs, for ``-o NAME.csv``
    ``NAME.csv``          the manifest: one row per usable video (columns ``COLUMNS``).
    ``NAME.classes.txt``  the class names, one a line, line i = label i.
    ``NAME.rejects.csv``  columns ``path,reason``: every candidate that is not in the manifest.

    Paths in both CSVs are relative to ROOT, with ``/`` separators. The manifest's first line
    is a comment recording ROOT, relative to the manifest's own folder::

        # root: ../videos
        path,label,class_name,num_frames,fps,duration,width,height,codec,vfr,bytes
        archery/abc.mp4,0,archery,250,25.0,10.0,340,256,h264,0,1250311

    so a manifest and its videos can move together. ``read_manifest`` adds each row's absolute
    path as ``abs_path`` (``pandas.read_csv(path, comment="#")`` also reads the file).

Columns
    ``num_frames`` is counted by decoding every frame, never taken from the header (an AVI's
    header can claim 444 frames for a file that holds 68). ``duration`` (seconds) comes from the
    decoded frames' timestamps: last pts - first pts + the last frame's duration. ``fps`` is the
    stream's average (nominal) rate. ``codec`` is FFmpeg's codec name (h264, vp9, mpeg4...).
    ``vfr`` is 1 for a variable-frame-rate video (see below), else 0. ``bytes`` is the file's
    size when indexed: the pipelines skip (and log) a video whose size changed since, since DALI
    decodes a file cut short after indexing into black frames without an error.

Reject reasons: each starts with a stable keyword, then ``: details``
    ``zero bytes``, ``not a video`` (PyAV cannot open it), ``no video stream``,
    ``codec <name> not decodable on <device>`` (DALI's CPU backend decodes ``DALI_CODECS['cpu']``,
    its GPU "mixed" backend ``DALI_CODECS['gpu']``), ``unreadable`` (a decode error, or any
    other failure of the probe), ``truncated`` (the decoded frames end before
    ``TRUNCATED_FRACTION`` of the container's stated duration, or an MP4's boxes run past the end
    of the file, as interrupted downloads do), ``variable frame rate``, ``no class folder``;
    with annotations, ``missing`` (listed, but no file under ROOT) and ``duplicate`` (several
    files match one listed video).
    The first failed check wins: a truncated H.264 file probed for the CPU is rejected for its
    codec, since that is checked before decoding.

Variable frame rate
    Segment and interval selection use frame index as time, which only holds at a constant frame
    rate. A video is flagged when its sorted frame timestamps are far from evenly spaced (a gap
    between consecutive frames outside [1/VFR_GAP_RATIO, VFR_GAP_RATIO] x the median gap) or its
    duration disagrees with num_frames / fps by more than VFR_DURATION_TOLERANCE. ``index_tree``
    rejects flagged videos unless ``allow_vfr``, in which case it keeps them with ``vfr=1`` and
    prints a warning naming them. The fix is to re-encode them at a constant rate with
    ``python -m timeclr.data prepare`` (a later issue).
"""
import csv
import os
import statistics
import struct
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction
from pathlib import Path

import av
from tqdm import tqdm

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv"})

# What DALI's video decoders accept, by FFmpeg codec name (the codec, not the decoder library).
DALI_CODECS = {
    "cpu": frozenset({"vp8", "vp9", "mjpeg"}),
    "gpu": frozenset({"h264", "hevc", "mpeg4", "vp8", "vp9", "mjpeg", "av1"}),
}

COLUMNS = ("path", "label", "class_name", "num_frames", "fps", "duration", "width", "height", "codec", "vfr",
           "bytes")
REJECT_COLUMNS = ("path", "reason")

VFR_GAP_RATIO = 1.5
VFR_DURATION_TOLERANCE = 0.10
TRUNCATED_FRACTION = 0.90

PREPARE_HINT = "re-encode with python -m timeclr.data prepare"


class RejectedVideo(Exception):
    """A video the pipelines cannot use; ``reason`` starts with a stable keyword."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ManifestError(Exception):
    """A problem with the indexer's input as a whole (missing ROOT, no videos, bad manifest)."""


# ----------------------------------------------------------------------------------------------
# Finding the candidates


def sidecar_paths(manifest_path) -> tuple[Path, Path]:
    """The class list and rejects paths that go with a manifest: ``NAME.classes.txt``, ``NAME.rejects.csv``."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_suffix(".classes.txt"), manifest_path.with_suffix(".rejects.csv")


def find_videos(root) -> list[Path]:
    """Every candidate video file under ``root`` (see the module docstring), sorted.

    Raises ManifestError if ``root`` is not a folder or holds no candidate.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: no such folder")
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        for name in files:
            path = Path(folder) / name
            if not name.startswith(".") and path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
                found.append(path)
    if not found:
        raise ManifestError(f"{root}: no video files (extensions {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return sorted(found)


def class_of(root, path) -> str | None:
    """The class of ``path``: its parent folder relative to ``root``, or None directly in ``root``."""
    parent = Path(path).parent.relative_to(root)
    return None if parent == Path(".") else parent.as_posix()


def resolve_device(device: str) -> str:
    """'cpu' or 'gpu' for 'cpu', 'gpu' or 'auto' (gpu if torch sees CUDA)."""
    if device == "auto":
        import torch  # only here: the probe itself needs no torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if device not in DALI_CODECS:
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    return device


# ----------------------------------------------------------------------------------------------
# Probing one video


def probe_video(path, device: str | None = None) -> dict:
    """Open and fully decode one video with PyAV and measure it.

    Returns a dict with ``num_frames, fps, duration, width, height, codec, vfr`` (the manifest's
    measured columns; ``vfr`` a bool) and ``vfr_detail`` (why it is flagged, or None).
    With ``device`` 'cpu' or 'gpu', first checks that DALI can decode the codec there; with
    None, skips that check. Raises RejectedVideo for an unusable file. A variable frame rate is
    reported, not rejected: that is the caller's policy.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise RejectedVideo("zero bytes")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as e:  # FFmpeg raises several types here; all mean "cannot open"
        cut = _mp4_cut_short(path)
        if cut:
            raise RejectedVideo(f"truncated: {cut}") from None
        raise RejectedVideo(f"not a video: PyAV cannot open it ({_describe(e)})") from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            raise RejectedVideo(f"no video stream: {', '.join(kinds) or 'no'} streams only")
        stream = container.streams.video[0]
        codec = stream.codec_context.codec.canonical_name
        if device is not None and codec not in DALI_CODECS[device]:
            raise RejectedVideo(
                f"codec {codec} not decodable on {device}: DALI's {device} backend decodes "
                f"{', '.join(sorted(DALI_CODECS[device]))}; {PREPARE_HINT}"
                + (" or index with --device gpu" if device == "cpu" and codec in DALI_CODECS["gpu"] else ""))
        frames = _decode_timing(container, stream)
        return {**_measure(container, stream, codec, frames), "bytes": path.stat().st_size}


def _decode_timing(container, stream) -> dict:
    """Decode every frame; keep only what the measurements need (count, size, timestamps)."""
    count, size, times = 0, None, []  # times: (pts, duration) in stream.time_base units
    try:
        for frame in container.decode(stream):
            count += 1
            size = size or (frame.width, frame.height)
            if frame.pts is not None:
                times.append((frame.pts, frame.duration or 0))
    except Exception as e:
        raise RejectedVideo(f"unreadable: decode error after {count} frames ({_describe(e)})") from None
    if count == 0:
        raise RejectedVideo("unreadable: no frame could be decoded")
    return {"count": count, "size": size, "times": times}


def _measure(container, stream, codec: str, frames: dict) -> dict:
    n, tb = frames["count"], stream.time_base
    fps = stream.average_rate or stream.guessed_rate or stream.base_rate  # a Fraction or None
    # Decoded frames' timestamps can come out of display order (packed B-frames in AVI), so
    # sort them: only their spacing matters here.
    times = sorted(frames["times"])
    if tb and len(times) == n:  # every frame has a timestamp
        (first, _), (last, last_duration) = times[0], times[-1]
        span = (last - first) * tb
        fps = fps or (Fraction(n - 1) / span if span else None)
        if not fps:
            raise RejectedVideo("unreadable: no frame rate (one frame, none stated)")
        duration = float(span + (last_duration * tb if last_duration else 1 / Fraction(fps)))
        vfr_detail = _vfr_detail([p for p, _ in times], n, float(fps), duration)
        _check_truncated(container, stream, first, duration)
    else:  # missing timestamps: trust the stated rate, and timing cannot be checked
        if not fps:
            raise RejectedVideo("unreadable: neither a frame rate nor frame timestamps")
        duration, vfr_detail = float(n / Fraction(fps)), None
        _check_truncated(container, stream, None, duration)
    width, height = frames["size"]
    return {"num_frames": n, "fps": float(fps), "duration": duration, "width": width, "height": height,
            "codec": codec, "vfr": vfr_detail is not None, "vfr_detail": vfr_detail}


def _check_truncated(container, stream, first_pts, duration: float):
    """Reject a file whose decoded frames end well before the duration its container states."""
    tb = stream.time_base
    if stream.duration:
        stated = float(stream.duration * tb)
    elif container.duration:
        stated = container.duration / av.time_base
    else:
        return  # nothing stated, nothing to compare with
    # The stated duration counts from the stream's start, so measure the decoded end from there.
    if first_pts is not None and stream.start_time is not None:
        decoded_end = float((first_pts - stream.start_time) * tb) + duration
    else:
        decoded_end = duration
    if decoded_end < TRUNCATED_FRACTION * stated:
        raise RejectedVideo(f"truncated: decoded frames end at {decoded_end:.2f} s of the "
                            f"{stated:.2f} s the container states (file cut short or damaged)")


def _vfr_detail(pts: list, n: int, fps: float, duration: float) -> str | None:
    """Why the sorted timestamps show a variable frame rate, or None if constant."""
    gaps = [b - a for a, b in zip(pts, pts[1:])]
    if gaps:
        median = statistics.median(gaps)
        if median == 0:
            return "most frames share their timestamp with another"
        ratios = (max(gaps) / median, min(gaps) / median)
        if ratios[0] > VFR_GAP_RATIO or ratios[1] < 1 / VFR_GAP_RATIO:
            return (f"frame gaps from {ratios[1]:.2f}x to {ratios[0]:.2f}x the median "
                    f"(allowed {1 / VFR_GAP_RATIO:.2f}x..{VFR_GAP_RATIO}x)")
    nominal = n / fps
    if abs(duration - nominal) > VFR_DURATION_TOLERANCE * nominal:
        return (f"{n} frames span {duration:.2f} s, but at {fps:.3g} fps they would take "
                f"{nominal:.2f} s")
    return None


def _mp4_cut_short(path) -> str | None:
    """For an MP4/QuickTime file (found by its first box, whatever its extension): how its
    top-level boxes show it was cut short, or None if they do not (or it is no MP4).

    FFmpeg only says "invalid data" for an MP4 whose index (moov box) was cut off, as it is in
    an interrupted download when the index comes last; walking the box headers tells why.
    """
    size = os.path.getsize(path)
    offset, kinds = 0, []
    with open(path, "rb") as f:
        while offset + 8 <= size:
            f.seek(offset)
            header = f.read(16)
            box_size, kind = struct.unpack(">I4s", header[:8])
            if not kinds and kind not in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"):
                return None  # does not start like an MP4
            if box_size == 1 and len(header) == 16:  # 64-bit size follows
                box_size = struct.unpack(">Q", header[8:])[0]
            elif box_size == 0:  # box runs to the end of the file
                box_size = size - offset
            if box_size < 8 or not all(32 <= c < 127 for c in kind):
                return None  # not a box structure after all (or damaged, not cut)
            kinds.append(kind)
            name = kind.decode("latin-1")
            if offset + box_size > size:
                return f"MP4 box '{name}' needs {offset + box_size} bytes but the file has {size}"
            offset += box_size
    if kinds and b"moov" not in kinds:
        return "MP4 without its 'moov' index box"
    return None


def _describe(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


# ----------------------------------------------------------------------------------------------
# Indexing a tree


def _probe_outcome(path: Path, device: str) -> tuple[str, object]:
    """Run in a worker: ('ok', info) or ('rejected', reason). Never raises, so one bad file
    cannot stop the pool, and only plain data (no FFmpeg exception objects) is pickled back."""
    try:
        return "ok", probe_video(path, device)
    except RejectedVideo as e:
        return "rejected", e.reason
    except Exception as e:
        return "rejected", f"unreadable: the probe failed ({_describe(e)})"


def run_per_file(task, jobs: dict, workers: int, desc: str, on_crash, progress: bool = True) -> dict:
    """``{key: task(*args)}`` for every ``key: args`` of ``jobs``, in ``workers`` processes (in
    this process for workers <= 1), with a tqdm bar. ``task`` must not raise: it returns an outcome.

    A worker that dies (a decoder crash) breaks the whole pool and every unfinished job with it;
    those are rerun one by one in a fresh process each, so only the file that caused the crash
    gets ``on_crash(key)`` as its outcome and the others get their own.
    """
    outcomes, crashed = {}, []
    with tqdm(total=len(jobs), desc=desc, unit="video", disable=not progress) as bar:
        if workers <= 1:
            for key, args in jobs.items():
                outcomes[key] = task(*args)
                bar.update()
        elif jobs:
            with ProcessPoolExecutor(workers) as pool:
                futures = {pool.submit(task, *args): key for key, args in jobs.items()}
                for future in as_completed(futures):
                    try:
                        outcomes[futures[future]] = future.result()
                    except BrokenProcessPool:
                        crashed.append(futures[future])
                    bar.update()
    for key in sorted(crashed):
        try:
            with ProcessPoolExecutor(1) as pool:
                outcomes[key] = pool.submit(task, *jobs[key]).result()
        except BrokenProcessPool:
            outcomes[key] = on_crash(key)
    return outcomes


def probe_all(paths, device: str, workers: int, progress: bool = True) -> dict:
    """{path: ('ok', info) | ('rejected', reason)} for every path, probed by ``workers``
    processes (in this process for workers <= 1), with a tqdm progress bar."""
    return run_per_file(_probe_outcome, {path: (path, device) for path in paths}, workers, "probing videos",
                        lambda path: ("rejected", "unreadable: the decoder crashed the probe process"), progress)


def index_tree(root, manifest_path, device: str = "auto", workers: int | None = None,
               allow_vfr: bool = False, progress: bool = True, layout: str = "folder",
               annotations=None, split=None, subset=None) -> tuple[int, int]:
    """Index the videos at ``root`` into ``manifest_path`` and its sidecars.

    Writes the manifest, the class list and the rejects (see the module docstring), prints the
    counts, the files' locations and warnings, and returns ``(n_accepted, n_rejected)``.
    ``device``: 'cpu', 'gpu' or 'auto'; ``workers``: probe processes (default min(8, CPUs));
    ``allow_vfr``: keep variable-frame-rate videos (``vfr=1``) instead of rejecting them.
    ``layout``: 'folder' (a folder-per-class tree) or a dataset layout read from ``annotations``
    for ``split`` and ``subset`` (``timeclr.pipelines.layouts``).
    Raises ManifestError if ``root`` is missing or holds no candidate video, if the layout's
    options or annotations are wrong, or if no listed video is under ``root``.
    """
    from timeclr.pipelines.layouts import read_annotations  # layouts imports this module

    root, manifest_path = Path(root), Path(manifest_path)
    listed = read_annotations(layout, annotations, split, subset)  # first: quick to fail
    device = resolve_device(device)
    workers = workers or min(8, os.cpu_count() or 1)
    paths = find_videos(root)
    rejects, kept_vfr = [], []
    if listed is None:
        classes = sorted({class_of(root, p) for p in paths} - {None})
        assigned = {}  # path -> class name
        for path in paths:
            if class_of(root, path) is None:
                rejects.append({"path": _rel(root, path), "reason": "no class folder: videos go in ROOT/<class>/"})
            else:
                assigned[path] = class_of(root, path)
        summary = None
    else:
        classes = listed.classes
        assigned, unmatched, summary = match_annotations(root, paths, listed)
        rejects += unmatched
    labels = {name: i for i, name in enumerate(classes)}

    rows = []
    outcomes = probe_all(list(assigned), device, workers, progress)
    for path, (status, result) in sorted(outcomes.items()):
        rel = _rel(root, path)
        if status == "rejected":
            rejects.append({"path": rel, "reason": result})
        elif result["vfr"] and not allow_vfr:
            rejects.append({"path": rel, "reason": f"variable frame rate: {result['vfr_detail']}; "
                                                   f"{PREPARE_HINT} (or index with --allow-vfr)"})
        else:
            class_name = assigned[path]
            rows.append({**result, "path": rel, "label": labels[class_name], "class_name": class_name,
                         "fps": round(result["fps"], 6), "duration": round(result["duration"], 6),
                         "vfr": int(result["vfr"])})
            if result["vfr"]:
                kept_vfr.append(rel)

    _write_outputs(root, manifest_path, classes, rows, sorted(rejects, key=lambda r: r["path"]))
    _report(root, manifest_path, device, classes, rows, rejects, kept_vfr, summary)
    return len(rows), len(rejects)


def match_annotations(root, paths, listed) -> tuple[dict, list, str]:
    """Match the entries of ``listed`` (a ``layouts.Annotations``) to the candidate ``paths``.

    An entry's key matches a file whose path relative to ``root``, without its extension, is the
    key or ends with ``/`` + key; failing that, with ``listed.ignore_case``, the one such file
    that agrees with the key but for case (and that no other entry names exactly). Returns
    ``({path: class name}, rejects, summary)``: the matched files, a ``missing`` reject per
    entry without a file and a ``duplicate`` reject per file of an entry with several, and a
    line for the printed report. Files no entry names are in neither. Raises ManifestError if
    no entry matches a file: ROOT or the annotations are surely the wrong ones.
    """
    root = Path(root)
    keys = {entry.key for entry in listed.entries}
    by_key = {}  # every trailing part of each file's path without extension that some key could be
    for depth in sorted({key.count("/") + 1 for key in keys}):
        for path in paths:
            parts = path.relative_to(root).with_suffix("").parts
            if len(parts) >= depth:
                by_key.setdefault("/".join(parts[-depth:]), []).append(path)
    by_folded = {}
    if listed.ignore_case:
        for key, found in by_key.items():
            if key not in keys:  # a file some entry names exactly is not another's case-variant
                by_folded.setdefault(key.casefold(), []).extend(found)

    assigned, rejects, used, missing = {}, [], set(), 0
    for entry in listed.entries:
        found = by_key.get(entry.key) or by_folded.get(entry.key.casefold(), [])
        if not found:
            missing += 1
            rejects.append({"path": entry.key, "reason": f"missing: {entry.where} lists it (class "
                                                         f"{entry.class_name}), no file under ROOT matches"})
        elif len(found) > 1:
            names = ", ".join(_rel(root, p) for p in sorted(found))
            for path in found:
                rejects.append({"path": _rel(root, path), "reason": f"duplicate: {len(found)} files match "
                                f"{entry.key}, listed in {entry.where}: {names}; keep one"})
        else:
            assigned[found[0]] = entry.class_name
        used.update(found)
    if missing == len(listed.entries):
        example = listed.entries[0]
        raise ManifestError(f"{root}: none of the {missing} videos of {listed.source} is under it "
                            f"(e.g. {example.key}, listed in {example.where}, would match "
                            f"ROOT/.../{example.key}.<ext>; ROOT holds e.g. {_rel(root, paths[0])}): "
                            "is ROOT the dataset's video folder, and are these its annotations?")
    others = len(set(paths) - used)
    summary = (f"  annotations: {listed.source}: {len(listed.entries)} videos listed, {missing} missing "
               f"under ROOT; {others} other files under ROOT are not in this split")
    return assigned, rejects, summary


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _write_outputs(root: Path, manifest_path: Path, classes, rows, rejects):
    classes_path, rejects_path = sidecar_paths(manifest_path)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    root_from_manifest = os.path.relpath(root.resolve(), manifest_path.parent.resolve())
    with open(manifest_path, "w", newline="", encoding="utf-8") as f:
        f.write(f"# root: {Path(root_from_manifest).as_posix()}\n")
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with open(rejects_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, REJECT_COLUMNS)
        writer.writeheader()
        writer.writerows(rejects)
    classes_path.write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")


def _report(root, manifest_path, device, classes, rows, rejects, kept_vfr, summary=None):
    classes_path, rejects_path = sidecar_paths(manifest_path)
    print(f"indexed {root} for DALI on {device}: {len(rows)} accepted, {len(rejects)} rejected, "
          f"{len(classes)} classes")
    if summary:
        print(summary)
    print(f"  manifest: {manifest_path} (classes: {classes_path})")
    print(f"  rejects:  {rejects_path}")
    by_reason = {}
    for r in rejects:
        keyword = r["reason"].split(":")[0]
        by_reason[keyword] = by_reason.get(keyword, 0) + 1
    for keyword, count in sorted(by_reason.items(), key=lambda kv: -kv[1]):
        print(f"  rejected, {keyword}: {count}")
    if kept_vfr:
        print(f"warning: {len(kept_vfr)} videos have a variable frame rate and are kept with vfr=1, "
              f"but frame index is not time in them: {', '.join(kept_vfr)}; {PREPARE_HINT}",
              file=sys.stderr)
    empty = sorted(set(classes) - {r["class_name"] for r in rows})
    if empty:
        print(f"warning: {len(empty)} classes have no accepted video: {', '.join(empty)}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Reading a manifest


def read_manifest(path, root=None) -> tuple[list[dict], list[str]]:
    """Load a manifest written by ``index_tree``: ``(rows, classes)``.

    Each row is a dict of the manifest's columns (``path`` as written, relative to the root),
    numbers as int or float, ``vfr`` as a bool, plus ``abs_path``: the absolute path, resolved
    against ``root`` if given, else the root recorded in the manifest's first line.
    ``classes[label]`` is the class name (from ``NAME.classes.txt``).
    """
    path = Path(path)
    classes_path, _ = sidecar_paths(path)
    with open(path, newline="", encoding="utf-8") as f:
        first = f.readline()
        if not first.startswith("# root:"):
            raise ManifestError(f"{path}: not a manifest (the first line should be '# root: ...')")
        if root is None:
            root = path.parent / first[len("# root:"):].strip()
        root = Path(root).resolve()
        rows = [_typed(row, root) for row in csv.DictReader(f)]
    if not classes_path.is_file():
        raise ManifestError(f"{classes_path}: missing (the class list that goes with {path})")
    classes = classes_path.read_text(encoding="utf-8").splitlines()
    for row in rows:
        if not 0 <= row["label"] < len(classes) or classes[row["label"]] != row["class_name"]:
            raise ManifestError(f"{path}: row {row['path']} has label {row['label']} and class "
                                f"{row['class_name']!r}, which {classes_path} does not match")
    return rows, classes


def _typed(row: dict, root: Path) -> dict:
    ints = ("label", "num_frames", "width", "height") + (("bytes",) if row.get("bytes") else ())
    return {**row, **{k: int(row[k]) for k in ints},
            "fps": float(row["fps"]), "duration": float(row["duration"]),
            "vfr": row["vfr"] == "1", "abs_path": str(root / row["path"])}
