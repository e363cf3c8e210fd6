"""Preparing a video tree: re-encode every video under SRC into DST, resumably.

``python -m timeclr.data prepare SRC DST`` runs ``prepare_tree``; then index DST as usual. What
each output is (constant frame rate, fixed closed GOPs, size) and why: ``timeclr.pipelines.ingest.transcode``.

Output paths
    Each source ``SRC/<rel>`` becomes ``DST/<rel>`` with the extension of the codec (``.mp4``
    for H.264, ``.webm`` for VP9, ``.tar`` for a JPEG frame archive): ``output_path``.

Resuming
    Outputs appear whole or not at all (``transcode.part_path``), so an output that exists is
    finished: a rerun skips it (counted as skipped), and re-prepares everything else. A run
    removes the ``.part`` leftovers of an interrupted one at its start; only one run may write
    into a DST at a time. To redo a video whose source changed, delete its output.
    ``DST/prepare.settings.json`` records the codec, size, gop, fps and crf of the outputs; a run
    with other settings into the same DST is refused (``ValueError``) rather than mixing two
    kinds of video in one tree.

Failures
    A source that cannot be prepared never stops the others. Its reason starts with a stable
    keyword as in the manifest (``zero bytes``, ``not a video``, ``no video stream``,
    ``unreadable`` (a decoder or encoder that crashed its worker too), ``encode failed``,
    ``timed out`` (still running after ``PREPARE_TIMEOUT_S`` or ``--timeout``: a decoder or encoder
    that hangs on it), ``name clash`` for two sources that would write the same output, e.g.
    ``a/x.avi`` and ``a/x.mp4``), then ``: details``. They are returned, printed by
    keyword and written to ``DST/prepare.failures.csv`` (columns ``path,reason``, paths relative
    to SRC; rewritten by every run, so it lists the current failures). A failed source leaves no
    output, not even a partial one. The settings file and the failures CSV are written atomically
    too (``timeclr.files.atomic``), so a killed run never leaves half of one.
"""
import csv
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from timeclr.files.atomic import atomic_open, disk_full, free_space, write_json
from timeclr.errors import DiskFull, ManifestError, VideoError
from timeclr.files.lock import FolderLock
from timeclr.pipelines.ingest.index import find_videos
from timeclr.pipelines.ingest.pool import run_per_file
from timeclr.pipelines.ingest.probe import VIDEO_EXTENSIONS, describe
from timeclr.pipelines.ingest.transcode import CODECS, DEFAULT_GOP, PART_RE, check_settings, part_path, prepare_video
from timeclr.files.recorded import differences

FAILURES_NAME = "prepare.failures.csv"
SETTINGS_NAME = "prepare.settings.json"
FAILURE_COLUMNS = ("path", "reason")
# Re-encoding a 1080p video at full size runs at about 30 frames/s on one core (its share when
# workers = cores), so 600 s covers some 10 minutes of it; to a 256-pixel short side, about 30
# minutes; the usual datasets' clips take seconds. A file still going after that is more likely a
# decoder or encoder that hangs on it; it holds up one worker, never the run, and a rerun with a
# longer --timeout redoes only the failures (finished outputs are skipped).
PREPARE_TIMEOUT_S = 600.0


@dataclass
class PrepareReport:
    """What ``prepare_tree`` did. Paths are the sources', relative to SRC, POSIX form."""

    done: list = field(default_factory=list)  # prepared by this run
    skipped: list = field(default_factory=list)  # their output already existed
    failed: dict = field(default_factory=dict)  # path -> reason
    failures_csv: Path | None = None

    def __str__(self):
        return f"{len(self.done)} prepared, {len(self.skipped)} skipped (already done), {len(self.failed)} failed"


def output_path(dst_root, rel: Path, codec: str) -> Path:
    """Where the output of source ``rel`` (relative to SRC) goes: same path, the codec's extension."""
    return Path(dst_root) / Path(rel).with_suffix(CODECS[codec][1])


def _prepare_outcome(src: Path, dst: Path, settings: dict, threads: int) -> tuple[str, object]:
    """Run in a worker: ('done', info) or ('failed', reason). Never raises, so one bad file
    cannot stop the pool, and only plain data is pickled back."""
    try:
        return "done", prepare_video(src, dst, threads=threads, **settings)
    except VideoError as e:
        return "failed", e.reason
    except Exception as e:
        if disk_full(e):  # no fault of this source: prepare_tree stops
            return "disk full", str(e)
        return "failed", f"unreadable: preparing failed ({describe(e)})"


def prepare_tree(src, dst, codec: str = "h264", short_side: int | None = None, gop: int = DEFAULT_GOP,
                 fps=None, workers: int | None = None, progress: bool = True,
                 crf: int | None = None, timeout_s: float | None = PREPARE_TIMEOUT_S) -> PrepareReport:
    """Prepare every video under ``src`` (``find_videos``) into ``dst``, keeping relative paths.

    ``codec``: 'h264' (.mp4), 'vp9' (.webm) or 'jpeg' (.tar frame archives); ``short_side``: even size of the short side, or
    None to keep the size; ``gop``: keyframe interval in frames; ``fps``: output rate, or None
    for each source's own nominal rate; ``workers``: processes (default min(8, CPUs); 1 = in this
    process if ``timeout_s`` is None); ``crf``: quality, None for the codec's default
    (``transcode.DEFAULT_CRF``); ``timeout_s``: each source's deadline, past which its worker is
    killed and it fails (``timed out``), or None for none.
    Skips sources whose output exists, writes ``dst/prepare.failures.csv``, prints a summary
    (and a tqdm bar if ``progress``) and returns a PrepareReport. Raises ValueError for bad
    arguments, a missing or empty ``src``, or a ``dst`` prepared earlier with other settings, and
    DiskFull when the disk fills up (the outputs finished before are whole; a rerun goes on).
    """
    settings = check_settings(codec, short_side, gop, fps, crf)
    if workers is not None and not (isinstance(workers, int) and not isinstance(workers, bool) and workers > 0):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ValueError(f"src: {src}: no such folder")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ValueError(f"dst: {dst} is inside src {src}; the outputs would be taken for sources on a rerun")
    try:
        sources = find_videos(src, VIDEO_EXTENSIONS)  # a frame archive is no source to re-encode
    except ManifestError as e:
        raise ValueError(f"src: {e}") from None
    workers = workers or min(8, os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // workers)

    dst.mkdir(parents=True, exist_ok=True)
    with FolderLock(dst, "prepare"):  # a second prepare into dst refuses instead of interleaving
        return _prepare_into(src, dst, sources, settings, codec, workers, threads, progress, timeout_s)


def _prepare_into(src, dst, sources, settings, codec, workers, threads, progress, timeout_s) -> PrepareReport:
    """``prepare_tree``'s work, under ``dst``'s lock."""
    _check_settings_file(dst, settings)
    leftovers = _remove_parts(dst)
    if leftovers:
        print(f"removed {leftovers} unfinished .part files left by an interrupted run in {dst}")

    report = PrepareReport(failures_csv=dst / FAILURES_NAME)
    todo, owner = {}, {}  # todo: source -> output; owner: output -> the source that writes it
    for path in sources:
        rel = path.relative_to(src)
        out = output_path(dst, rel, codec)
        if out in owner:
            report.failed[rel.as_posix()] = (f"name clash: {rel.as_posix()} and "
                                             f"{owner[out].relative_to(src).as_posix()} would both write "
                                             f"{out.relative_to(dst).as_posix()}; rename one")
            continue
        owner[out] = path
        if out.exists():
            report.skipped.append(rel.as_posix())
        else:
            todo[path] = out

    outcomes = _run_all(todo, settings, workers, threads, progress, timeout_s)
    full = sorted(path.relative_to(src).as_posix() for path, (status, _) in outcomes.items() if status == "disk full")
    if full:  # the outputs finished so far are whole (written under part names): a rerun goes on
        raise DiskFull(f"{dst}: the disk filled up ({free_space(dst)} free) while preparing {full[0]}"
                       f"{f' and {len(full) - 1} more' if len(full) > 1 else ''}; the "
                       f"{sum(s == 'done' for s, _ in outcomes.values()) + len(report.skipped)} outputs "
                       "written are whole, and the same command prepares the rest once there is space")
    for path, (status, result) in sorted(outcomes.items()):
        rel = path.relative_to(src).as_posix()
        if status == "done":
            report.done.append(rel)
        else:
            report.failed[rel] = result
    report.failed = dict(sorted(report.failed.items()))
    _write_failures(report)
    _print_report(src, dst, codec, report)
    return report


def _run_all(todo: dict, settings: dict, workers: int, threads: int, progress: bool, timeout_s) -> dict:
    def failed(src, why):  # the killed worker may have left a half-written part file
        part_path(todo[src]).unlink(missing_ok=True)
        if why == "timed out":
            return "failed", (f"timed out: preparing took longer than {timeout_s:g} s "
                              "(a decoder or encoder that hangs on this file?)")
        return "failed", "unreadable: the decoder or encoder crashed the worker process"

    jobs = {src: (src, out, settings, threads) for src, out in todo.items()}
    return run_per_file(_prepare_outcome, jobs, workers, "preparing videos", failed, progress, timeout_s)


def _settings_record(settings: dict) -> dict:
    fps = settings["fps"]
    return {**settings, "fps": None if fps is None else str(fps)}  # JSON has no Fraction


def _check_settings_file(dst: Path, settings: dict):
    """Record the settings in DST, or refuse if DST holds outputs made with other settings."""
    path, record = dst / SETTINGS_NAME, _settings_record(settings)
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None  # unreadable: rewritten below, as if DST were new
        if isinstance(old, dict):
            differ = differences(old, record, keys=list(record))
            if differ:
                raise ValueError(f"dst: {dst} holds videos prepared with other settings ({'; '.join(differ)}); "
                                 f"use another folder or empty it")
            return
    write_json(path, record, indent=1)


def _remove_parts(dst: Path) -> int:
    """Delete the ``.NAME.part.EXT`` leftovers of an interrupted run; returns how many."""
    removed = 0
    for folder, _, files in os.walk(dst):
        for name in files:
            if PART_RE.match(name):
                (Path(folder) / name).unlink(missing_ok=True)
                removed += 1
    return removed


def _write_failures(report: PrepareReport):
    with atomic_open(report.failures_csv, newline="") as f:
        writer = csv.DictWriter(f, FAILURE_COLUMNS)
        writer.writeheader()
        writer.writerows({"path": p, "reason": r} for p, r in report.failed.items())


def _print_report(src: Path, dst: Path, codec: str, report: PrepareReport):
    print(f"prepared {src} -> {dst} ({codec}): {report}")
    if report.failed:
        print(f"  failures: {report.failures_csv}")
        by_reason = {}
        for reason in report.failed.values():
            keyword = reason.split(":")[0]
            by_reason[keyword] = by_reason.get(keyword, 0) + 1
        for keyword, count in sorted(by_reason.items(), key=lambda kv: -kv[1]):
            print(f"  failed, {keyword}: {count}", file=sys.stderr)
