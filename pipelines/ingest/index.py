"""Indexing a video tree: find the candidate videos, give each its class, probe them all and write
the manifest. ``python -m timeclr.data index`` runs ``index_tree``.

Input tree
    ``ROOT/<class>/<video>``: a video's class is its parent folder's path relative to ROOT
    (POSIX form, so a nested ``ROOT/a/b/x.mp4`` has class ``a/b``). Candidates are the regular,
    non-hidden files (name not starting with ``.``, not inside a hidden folder) whose extension
    is one of ``INDEX_EXTENSIONS`` (the video extensions and ``.tar`` frame archives), case-insensitive. Every candidate ends up in exactly one of
    the manifest or the rejects; a candidate sitting directly in ROOT has no class and is
    rejected (``no class folder``). Labels are 0..C-1 in sorted class-name order over the class
    folders that hold candidates, whether or not their videos are accepted, so labels do not
    depend on which files a device can decode.

    That is ``annotation_format="folder"`` (``--layout folder``). The other annotation formats
    (``kinetics``, ``ucf101``, ``hmdb51``, ``ssv2``: ``timeclr.pipelines.ingest.annotation_formats``) take the classes, labels and the videos of one split from the
    dataset's annotation files instead: a candidate is in the manifest or the rejects if an
    entry of the split names it, and left out otherwise; an entry that names no file is rejected
    as ``missing`` (its path: the entry's key, the path without extension the annotations give).

Outputs: the manifest, ``NAME.classes.txt`` and ``NAME.rejects.csv`` (``timeclr.pipelines.storage.manifest``).

Reject reasons
    Those of the probe (``timeclr.pipelines.ingest.probe``: ``zero bytes``, ``not a video``, ``no video
    stream``, ``codec ... not decodable on ...``, ``unreadable``, ``truncated``), ``unreadable``
    too for a decoder that crashed the probe's process, ``timed out`` for a probe that ran past
    its deadline (``PROBE_TIMEOUT_S``: a decoder that hangs on the file), then the tree's own:
    ``variable frame rate``, ``no class folder``; with annotations, ``missing`` (listed, but no
    file under ROOT) and ``duplicate`` (several files match one listed video). Each starts with
    its keyword, then ``: details``.

Variable frame rate
    ``index_tree`` rejects the videos the probe flags unless ``allow_vfr``, in which case it keeps
    them with ``vfr=1`` and prints a warning naming them.
"""
import os
import sys
from pathlib import Path

from timeclr.errors import ManifestError, VideoError
from timeclr.pipelines.ingest.annotation_formats import read_annotations
from timeclr.pipelines.storage.manifest import sidecar_paths, write_manifest
from timeclr.pipelines.ingest.pool import run_per_file
from timeclr.pipelines.ingest.probe import INDEX_EXTENSIONS, PREPARE_HINT, describe, probe_video, resolve_device

# The probe decodes every frame on one CPU core, 1080p H.264 at about 300 frames/s: a 10-minute
# 1080p video takes about a minute, the usual datasets' clips (Kinetics' 10 s, UCF101's, SSv2's)
# well under a second. A file still probing after 120 s is far more likely a decoder that hangs on
# it than a long video; it holds up one worker, never the run (longer videos: --timeout).
PROBE_TIMEOUT_S = 120.0


def find_videos(root, extensions=INDEX_EXTENSIONS) -> list[Path]:
    """Every candidate video file under ``root`` (see the module docstring), sorted: a file whose
    extension (lower-case) is in ``extensions``; the indexer's default takes frame archives too.

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
            if not name.startswith(".") and path.suffix.lower() in extensions and path.is_file():
                found.append(path)
    if not found:
        raise ManifestError(f"{root}: no video files (extensions {', '.join(sorted(extensions))})")
    return sorted(found)


def class_of(root, path) -> str | None:
    """The class of ``path``: its parent folder relative to ``root``, or None directly in ``root``."""
    parent = Path(path).parent.relative_to(root)
    return None if parent == Path(".") else parent.as_posix()


def _probe_outcome(path: Path, device: str) -> tuple[str, object]:
    """Run in a worker: ('ok', info) or ('rejected', reason). Never raises, so one bad file
    cannot stop the pool, and only plain data (no FFmpeg exception objects) is pickled back."""
    try:
        return "ok", probe_video(path, device)
    except VideoError as e:
        return "rejected", e.reason
    except Exception as e:
        return "rejected", f"unreadable: the probe failed ({describe(e)})"


def manifest_row(probed: dict, rel: str, label: int, class_name: str) -> dict:
    """A manifest row (``storage.manifest.COLUMNS`` but ``root``) for a video probed as ``probed``
    (``probe_video``'s dict), at ``rel`` under the indexed root."""
    return {**probed, "path": rel, "label": label, "class_name": class_name, "fps": round(probed["fps"], 6),
            "duration": round(probed["duration"], 6), "vfr": int(probed["vfr"])}


def probe_all(paths, device: str, workers: int, progress: bool = True,
              timeout_s: float | None = PROBE_TIMEOUT_S) -> dict:
    """{path: ('ok', info) | ('rejected', reason)} for every path, probed by ``workers``
    processes with a tqdm progress bar; a probe still running after ``timeout_s`` seconds is
    killed and its file rejected (``timed out``). ``timeout_s`` None: no deadline, and for
    workers <= 1 the probes run in this process (``run_per_file``)."""
    def failed(path, why):
        if why == "timed out":
            return "rejected", (f"timed out: the probe took longer than {timeout_s:g} s "
                                "(a decoder that hangs on this file?)")
        return "rejected", "unreadable: the decoder crashed the probe process"

    return run_per_file(_probe_outcome, {path: (path, device) for path in paths}, workers, "probing videos",
                        failed, progress, timeout_s)


def index_tree(root, manifest_path, device: str = "auto", workers: int | None = None,
               allow_vfr: bool = False, progress: bool = True, annotation_format: str = "folder",
               annotations=None, split=None, subset=None,
               timeout_s: float | None = PROBE_TIMEOUT_S) -> tuple[int, int]:
    """Index the videos at ``root`` into ``manifest_path`` and its sidecars.

    Writes the manifest, the class list and the rejects (see the module docstring), prints the
    counts, the files' locations and warnings, and returns ``(n_accepted, n_rejected)``.
    ``device``: 'cpu', 'gpu' or 'auto'; ``workers``: probe processes (default min(8, CPUs));
    ``allow_vfr``: keep variable-frame-rate videos (``vfr=1``) instead of rejecting them.
    ``annotation_format`` (``--layout``): 'folder' (a folder-per-class tree) or a dataset's
    annotation format, read from ``annotations`` for ``split`` and ``subset``
    (``timeclr.pipelines.ingest.annotation_formats``). ``timeout_s``: a probe's
    deadline, past which its file is rejected (``timed out``); None for none.
    Raises ManifestError if ``root`` is missing or holds no candidate video, if the format's
    options or annotations are wrong, or if no listed video is under ``root``.
    """
    root, manifest_path = Path(root), Path(manifest_path)
    listed = read_annotations(annotation_format, annotations, split, subset)  # first: quick to fail
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
    outcomes = probe_all(list(assigned), device, workers, progress, timeout_s)
    for path, (status, result) in sorted(outcomes.items()):
        rel = _rel(root, path)
        if status == "rejected":
            rejects.append({"path": rel, "reason": result})
        elif result["vfr"] and not allow_vfr:
            rejects.append({"path": rel, "reason": f"variable frame rate: {result['vfr_detail']}; "
                                                   f"{PREPARE_HINT} (or index with --allow-vfr)"})
        else:
            class_name = assigned[path]
            rows.append(manifest_row(result, rel, labels[class_name], class_name))
            if result["vfr"]:
                kept_vfr.append(rel)

    write_manifest(manifest_path, root, classes, rows, sorted(rejects, key=lambda r: r["path"]))
    _report(root, manifest_path, device, classes, rows, rejects, kept_vfr, summary)
    return len(rows), len(rejects)


def match_annotations(root, paths, listed) -> tuple[dict, list, str]:
    """Match the entries of ``listed`` (an ``annotation_formats.Annotations``) to the candidate ``paths``.

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
