"""Reading dataset annotation files robustly: each failure (a missing folder, bytes that are not
UTF-8, broken JSON) is a ``ManifestError`` that names the file, and where it can, the line.
Used by ``annotation_formats``' readers; CRLF line ends (as UCF101 ships them) read like LF."""
import json
from pathlib import Path

from timeclr.errors import ManifestError
from timeclr.pipelines.ingest.probe import VIDEO_EXTENSIONS


def dataset_folder(path: Path, patterns: list, dataset: str, expected: str) -> Path:
    """``path``, or its one sub-folder that holds a file matching one of ``patterns`` when
    ``path`` itself holds none (an archive extracted into it)."""
    if not path.is_dir():
        raise ManifestError(f"{path}: not a folder (the {dataset} annotations are a folder: {expected})")

    def holds(folder):
        return any(any(p.is_file() for p in folder.glob(pattern)) for pattern in patterns)

    if holds(path):
        return path
    inner = [d for d in path.iterdir() if d.is_dir() and holds(d)]
    if len(inner) == 1:
        return inner[0]
    raise ManifestError(f"{path}: not {dataset} annotations: expected {expected}"
                        + (f"; found them in several sub-folders ({', '.join(sorted(d.name for d in inner))})"
                           if inner else ""))


def open_text(path: Path):
    try:
        return open(path, newline="", encoding="utf-8-sig")  # newline="": the csv module's own
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({e.strerror or e})") from None


def lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text stripped) of the non-blank lines; CRLF and LF line ends alike."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # universal newlines: CRLF reads as LF
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({e.strerror or e})") from None
    return [(n, line.strip()) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({e.strerror or e})") from None


def strip_extension(name: str) -> str:
    """``name`` without its extension if that is a video extension (``a/b.avi`` -> ``a/b``)."""
    stem, dot, ext = name.rpartition(".")
    return stem if dot and "/" not in ext and f".{ext.lower()}" in VIDEO_EXTENSIONS else name
