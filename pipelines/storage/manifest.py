"""The manifest file format: the CSV of usable videos that the DALI pipelines read, and its sidecars.

The pipelines read their videos from a manifest instead of walking folders (``index_tree`` in
``timeclr.pipelines.ingest.index`` writes one; ``read_manifest`` loads it). This module only knows the
files; probing videos and indexing trees live in ``probe`` and ``index``.

Files, for ``-o NAME.csv``
    ``NAME.csv``          the manifest: one row per usable video (columns ``COLUMNS``).
    ``NAME.classes.txt``  the class names, one a line, line i = label i.
    ``NAME.rejects.csv``  columns ``path,reason``: every candidate that is not in the manifest.

    Both CSVs are plain CSV, the first line their header, so ``csv.DictReader`` and
    ``pandas.read_csv`` read them as they are::

        path,label,class_name,num_frames,fps,duration,width,height,codec,vfr,bytes,crc32,root
        archery/abc.mp4,0,archery,250,25.0,10.0,340,256,h264,0,1250311,2771915380,../videos

    ``path`` is relative to the indexed ROOT, with ``/`` separators, as in the rejects.
    ``root`` is ROOT relative to the manifest's own folder, so a manifest and its videos can move
    together; a video's file is ``<manifest folder>/<root>/<path>``. Every row carries it, rather
    than one header comment, because a comment line is what makes CSV readers take it for the
    header. ``read_manifest`` adds each row's absolute path as ``abs_path``.

    A manifest may come from elsewhere, so it is data: a row's ``path`` must stay inside its root
    (not empty, not absolute, no ``..`` component), else ``read_manifest`` refuses the manifest.
    ``root`` itself may climb out of the manifest's folder (``../videos``): that is its purpose.

    Manifests written before the ``root`` column had a first line ``# root: ../videos`` and no
    ``root`` column; ``read_manifest`` still loads them, with a warning to re-index.

Columns
    ``num_frames``, ``fps``, ``duration``, ``width``, ``height``, ``codec``, ``vfr`` are the
    measurements of ``timeclr.pipelines.ingest.probe.probe_video`` (``vfr`` written 1 or 0). ``label``
    and ``class_name`` agree with ``NAME.classes.txt``. ``bytes`` is the file's size when
    indexed: the pipelines skip (and log) a video whose size changed since, since DALI decodes a
    file cut short after indexing into black frames without an error. ``crc32`` is the file's
    CRC-32 (``zlib.crc32``, unsigned) when indexed: bytes overwritten in place keep the size, so
    the source checks it on every read of a video file (a frame archive checks each JPEG it reads
    against the CRC-32s in its ``info.json`` instead). Manifests without it still load.
"""
import csv
import os
import re
import warnings
from pathlib import Path, PureWindowsPath

from timeclr.files.atomic import atomic_open
from timeclr.errors import ManifestError

COLUMNS = ("path", "label", "class_name", "num_frames", "fps", "duration", "width", "height", "codec", "vfr",
           "bytes", "crc32", "root")
REJECT_COLUMNS = ("path", "reason")
# What a row needs to be read; ``bytes`` came later than the rest, ``root`` with the plain-CSV format.
_REQUIRED = ("path", "label", "class_name", "num_frames", "fps", "duration", "width", "height", "vfr")
_OLD_ROOT_LINE = "# root:"


def path_problem(path: str) -> str | None:
    """Why ``path``, a relative path read from data (a manifest row, an archive member), could
    name something outside the folder it is relative to (``'empty'``, ``'absolute'``, ``"a '..'
    component"``), or None when it stays inside. ``/`` and ``\\`` both count as separators, so a
    path written on Windows is judged as Windows would read it."""
    if not path:
        return "empty"
    if path[0] in "/\\" or PureWindowsPath(path).is_absolute():
        return "absolute"
    if ".." in re.split(r"[/\\]", path):
        return "a '..' component"
    return None


def sidecar_paths(manifest_path) -> tuple[Path, Path]:
    """The class list and rejects paths that go with a manifest: ``NAME.classes.txt``, ``NAME.rejects.csv``."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_suffix(".classes.txt"), manifest_path.with_suffix(".rejects.csv")


def write_manifest(manifest_path, root, classes, rows, rejects):
    """Write the manifest at ``manifest_path`` and its class list and rejects beside it.

    ``rows``: dicts with the columns of ``COLUMNS`` but ``root`` (extra keys are ignored), paths
    relative to ``root``; ``classes``: names in label order; ``rejects``: ``{path, reason}`` dicts.
    Each file appears whole or not at all; the manifest comes last, so a manifest that exists
    always has its class list.
    """
    manifest_path = Path(manifest_path)
    classes_path, rejects_path = sidecar_paths(manifest_path)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    root_from_manifest = Path(os.path.relpath(Path(root).resolve(), manifest_path.parent.resolve())).as_posix()
    with atomic_open(rejects_path, newline="") as f:
        writer = csv.DictWriter(f, REJECT_COLUMNS)
        writer.writeheader()
        writer.writerows(rejects)
    with atomic_open(classes_path) as f:
        f.write("".join(f"{c}\n" for c in classes))
    with atomic_open(manifest_path, newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**row, "root": root_from_manifest} for row in rows)


def read_manifest(path, root=None) -> tuple[list[dict], list[str]]:
    """Load a manifest written by ``index_tree``: ``(rows, classes)``.

    Each row is a dict of the manifest's columns (``path`` as written, relative to the root),
    numbers as int or float, ``vfr`` as a bool, plus ``abs_path``: the absolute path, resolved
    against ``root`` if given, else against the row's ``root`` (relative to the manifest's folder).
    ``classes[label]`` is the class name (from ``NAME.classes.txt``). Raises ManifestError for a
    file that is not a manifest, a row whose path leaves its root (``path_problem``), a missing
    class list, or labels that disagree with it.
    """
    path = Path(path)
    classes_path, _ = sidecar_paths(path)
    with open(path, newline="", encoding="utf-8") as f:
        first = f.readline()
        old_root = None
        if first.startswith(_OLD_ROOT_LINE):
            old_root = first[len(_OLD_ROOT_LINE):].strip()
            warnings.warn(f"{path}: an old-format manifest (a '# root:' first line); it still loads, but "
                          "re-index it with python -m timeclr.data index for a plain CSV", stacklevel=2)
        else:
            f.seek(0)
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in _REQUIRED if c not in header]
        if missing or (root is None and old_root is None and "root" not in header):
            raise ManifestError(f"{path}: not a manifest (the first line should be the header "
                                f"{','.join(COLUMNS)}; missing {', '.join(missing or ['root'])})")
        base = None if root is None else Path(root).resolve()
        resolved = {}  # a root as written -> resolved: a big manifest resolves each one once

        def root_of(row) -> Path:
            if base is not None:
                return base
            written = old_root if old_root is not None else row["root"]
            if written not in resolved:
                resolved[written] = (path.parent / written).resolve()
            return resolved[written]

        rows = []
        for row in reader:
            problem = path_problem(row["path"])
            if problem:
                # line_num counts the lines DictReader read; an old manifest's root line came before
                line = reader.line_num + (old_root is not None)
                what = "is empty" if problem == "empty" else f"leaves the manifest's root ({problem})"
                raise ManifestError(f"{path} line {line}: path {row['path']!r} {what}; a row's path is "
                                    "relative to its root, inside it")
            rows.append(_typed(row, root_of(row)))
    if not classes_path.is_file():
        raise ManifestError(f"{classes_path}: missing (the class list that goes with {path})")
    classes = classes_path.read_text(encoding="utf-8").splitlines()
    for row in rows:
        if not 0 <= row["label"] < len(classes) or classes[row["label"]] != row["class_name"]:
            raise ManifestError(f"{path}: row {row['path']} has label {row['label']} and class "
                                f"{row['class_name']!r}, which {classes_path} does not match")
    return rows, classes


def _typed(row: dict, root: Path) -> dict:
    ints = ("label", "num_frames", "width", "height") + tuple(k for k in ("bytes", "crc32") if row.get(k))
    return {**row, **{k: int(row[k]) for k in ints},
            "fps": float(row["fps"]), "duration": float(row["duration"]),
            "vfr": row["vfr"] == "1", "abs_path": str(root / row["path"])}
