"""Prepare a video tree: re-encode every video at a constant frame rate with a fixed keyframe interval.

Why: the pipelines select frames by index and treat index as time (``index / fps``), and DALI's
CPU decoder only gets fast by being handed the GOPs it needs (``pipelines/gop.py``). Real files
break both: variable or lying frame rates (``tree.avi`` holds 68 frames over 29.6 s under a
header that claims 444), timestamps out of order, B-frames, keyframes hundreds of frames apart,
codecs DALI's CPU backend cannot decode. Re-encoding once fixes all of it for every later epoch.
``python -m timeclr.data prepare SRC DST`` runs ``prepare_tree``; then index DST as usual.

What an output is
    ``DST/<same relative path>`` with the extension of the codec (``.mp4`` for H.264, ``.webm``
    for VP9), holding one video stream (audio, subtitles and metadata are dropped), yuv420p:

    * Constant frame rate ``fps``: the source's nominal rate (``average_rate``, else
      ``guessed_rate``), as the nearest fraction with a denominator up to 1001 (``1000000/66667``
      becomes 15, ``30000/1001`` stays), or the ``fps`` asked for.
    * Output frame k shows the source frame on screen at time k / fps: the last source frame
      whose presentation time, counted from the first frame's, is <= k / fps. Source frames are
      repeated or dropped as their timestamps require, so a gap in the source is a still in the
      output and time is index / fps again.
    * Frame count ``round(duration * fps)`` (halves round up, at least 1), so the output lasts as
      long as the source. ``duration`` comes from the decoded frames' timestamps: last - first
      + the last frame's duration (its own, else one nominal frame time), as in the manifest.
      Not from the container's or stream's stated duration: those are what the header claims,
      and a file cut short (an interrupted download) would be padded with its last frame up to
      the claimed length. A truncated source gives an output as long as what can be decoded.
    * Timestamps come from the decoder, but not frame by frame: AVI files with packed B-frames
      (``Megamind.avi``, UCF101's XviD files) output frames in the right order with their
      timestamps swapped around. The frames are kept in decoder order and the timestamps are
      handed out to them in sorted order (within a window of ``REORDER_WINDOW`` frames, so
      memory stays bounded); timestamps that still step back are clamped to the previous one.
    * A keyframe exactly every ``gop`` frames (0, gop, 2 gop...), each one closed (H.264 IDR;
      VP9 key frames reset every reference), no B-frames and no VP9 hidden alt-ref frames, so
      frame k is packet k and decoding can start at any keyframe: what GOP trimming assumes.
    * The short side scaled to ``short_side`` (up or down) keeping the aspect ratio, the other
      side rounded to an even number (yuv420p needs even sizes); with ``short_side=None`` the
      size is kept, an odd side scaled to the even number below it. The size is fixed by the
      first decoded frame; later frames of another size are scaled to it.

Defaults and why
    ``gop=16``: DALI's CPU path decodes from a selected frame's keyframe (GOP trimming), so each
    selected frame costs on average about gop / 2 extra decoded frames: 7.5 at gop 16 against 12
    at 25, for files only 4-7 % larger (measured on five real clips at short side 256).
    H.264 ``crf=20``, ``preset=veryfast``; VP9 ``crf=32`` with ``deadline=realtime, cpu-used=8``:
    the two come out alike (38-42 dB PSNR against the source scaled the same way, on the real
    clips at short side 256, similar sizes), near the source at training resolutions, and fast
    enough for a one-off pass (about 0.3 s per 10 s clip on a 2-core VM with 2 workers). Each
    encoder and decoder gets cpu_count / workers threads, so workers do not oversubscribe cores.

Resuming and atomic outputs
    Each output is written to a hidden temporary name next to it (``.NAME.part.mp4``: hidden, so
    neither ``find_videos`` nor the manifest indexer ever sees it) and renamed into place with
    ``os.replace`` only when complete. So an output that exists is finished: a rerun skips it
    (counted as skipped), and re-prepares everything else. A run removes the ``.part`` leftovers
    of an interrupted one at its start; only one run may write into a DST at a time. To redo a
    video whose source changed, delete its output. ``DST/prepare.settings.json`` records the
    codec, size, gop, fps and crf of the outputs; a run with other settings into the same DST is
    refused (``ValueError``) rather than mixing two kinds of video in one tree.

Failures
    A source that cannot be prepared never stops the others. Its reason starts with a stable
    keyword as in the manifest (``zero bytes``, ``not a video``, ``no video stream``,
    ``unreadable``, ``encode failed``, ``name clash`` for two sources that would write the same
    output, e.g. ``a/x.avi`` and ``a/x.mp4``), then ``: details``. They are returned, printed by
    keyword and written to ``DST/prepare.failures.csv`` (columns ``path,reason``, paths relative
    to SRC; rewritten by every run, so it lists the current failures). A failed source leaves no
    output, not even a partial one.
"""
import csv
import heapq
import json
import os
import re
import sys
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from timeclr.errors import ManifestError, VideoError
from timeclr.pipelines.index import find_videos
from timeclr.pipelines.pool import run_per_file
from timeclr.pipelines.probe import describe

CODECS = {  # codec name -> (FFmpeg encoder, output extension, container format)
    "h264": ("libx264", ".mp4", "mp4"),
    "vp9": ("libvpx-vp9", ".webm", "webm"),
}
DEFAULT_GOP = 16
DEFAULT_CRF = {"h264": 20, "vp9": 32}
CRF_RANGE = {"h264": (0, 51), "vp9": (0, 63)}
MAX_FPS_DENOMINATOR = 1001  # 30000/1001 (NTSC) is the most exotic rate worth keeping exactly
MAX_NOMINAL_FPS = 300  # a source "rate" above this is a container's time base, not a frame rate
REORDER_WINDOW = 16  # frames; packed B-frames in AVI displace timestamps by 1 or 2
FAILURES_NAME = "prepare.failures.csv"
SETTINGS_NAME = "prepare.settings.json"
FAILURE_COLUMNS = ("path", "reason")
_PART_RE = re.compile(r"^\..+\.part\.(mp4|webm)$")


@dataclass
class PrepareReport:
    """What ``prepare_tree`` did. Paths are the sources', relative to SRC, POSIX form."""

    done: list = field(default_factory=list)  # prepared by this run
    skipped: list = field(default_factory=list)  # their output already existed
    failed: dict = field(default_factory=dict)  # path -> reason
    failures_csv: Path | None = None

    def __str__(self):
        return f"{len(self.done)} prepared, {len(self.skipped)} skipped (already done), {len(self.failed)} failed"


# ----------------------------------------------------------------------------------------------
# Arguments


def check_settings(codec: str, short_side, gop, fps, crf=None) -> dict:
    """Validate the encoding arguments; returns them normalised (``fps`` a Fraction or None,
    ``crf`` filled in with the codec's default). Raises ValueError naming the bad argument."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(sorted(CODECS))}, got {codec!r}")
    if short_side is not None and not (_is_int(short_side) and short_side > 0 and short_side % 2 == 0):
        raise ValueError(f"short_side must be a positive even integer (yuv420p needs even sizes) "
                         f"or None, got {short_side!r}")
    if not (_is_int(gop) and gop > 0):
        raise ValueError(f"gop must be a positive integer, got {gop!r}")
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not fps > 0:
            raise ValueError(f"fps must be a positive number or None, got {fps!r}")
        fps = Fraction(fps).limit_denominator(MAX_FPS_DENOMINATOR)
        if fps <= 0:
            raise ValueError(f"fps must be a positive number or None, got a rate too small to use: {float(fps)}")
    if crf is None:
        crf = DEFAULT_CRF[codec]
    low, high = CRF_RANGE[codec]
    if not (_is_int(crf) and low <= crf <= high):
        raise ValueError(f"crf must be an integer in [{low}, {high}] for {codec}, got {crf!r}")
    return {"codec": codec, "short_side": short_side, "gop": gop, "fps": fps, "crf": crf}


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def output_path(dst_root, rel: Path, codec: str) -> Path:
    """Where the output of source ``rel`` (relative to SRC) goes: same path, the codec's extension."""
    return Path(dst_root) / Path(rel).with_suffix(CODECS[codec][1])


def part_path(out_path) -> Path:
    """The temporary name an output is written under until complete: ``.NAME.part.EXT``."""
    out_path = Path(out_path)
    return out_path.with_name(f".{out_path.stem}.part{out_path.suffix}")


# ----------------------------------------------------------------------------------------------
# One video


def prepare_video(src_path, dst_path, codec: str = "h264", short_side: int | None = None,
                  gop: int = DEFAULT_GOP, fps=None, crf: int | None = None, threads: int = 0) -> dict:
    """Re-encode one video (see the module docstring for what the output is).

    Writes ``dst_path`` atomically (via ``part_path(dst_path)``, creating its folder); the
    extension of ``dst_path`` is the caller's choice, the container follows ``codec``.
    ``threads``: encoder and decoder threads, 0 = FFmpeg's choice.
    Returns ``{frames, fps (Fraction), width, height, duration (source, seconds),
    source_frames}``. Raises VideoError for an unusable source (nothing is left at
    ``dst_path`` or its part name), ValueError for bad arguments.
    """
    settings = check_settings(codec, short_side, gop, fps, crf)
    src_path, dst_path = Path(src_path), Path(dst_path)
    part = part_path(dst_path)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        info = _transcode(src_path, part, settings, threads)
        os.replace(part, dst_path)
    finally:
        part.unlink(missing_ok=True)  # gone after a success (renamed), a failure or an interrupt
    return info


def _transcode(src: Path, part: Path, settings: dict, threads: int) -> dict:
    if not src.is_file():
        raise VideoError(f"not a video: {src} is not a file")
    if src.stat().st_size == 0:
        raise VideoError("zero bytes")
    try:
        container = av.open(str(src), metadata_errors="ignore")
    except Exception as e:  # FFmpeg raises several types here; all mean "cannot open"
        raise VideoError(f"not a video: PyAV cannot open it ({describe(e)})") from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            raise VideoError(f"no video stream: {', '.join(kinds) or 'no'} streams only")
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = "AUTO", threads
        nominal = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = settings["fps"] or (Fraction(nominal).limit_denominator(MAX_FPS_DENOMINATOR) if nominal else None)
        if not fps:
            raise VideoError("unreadable: the source states no frame rate; pass fps")
        if settings["fps"] is None and fps > MAX_NOMINAL_FPS:  # an fps asked for is used as is
            raise VideoError(f"unreadable: the source states {float(fps):g} fps, which would "
                               f"multiply its frames; pass fps")
        source = _TimedFrames(container, stream, nominal or fps, settings["short_side"])
        writer = None
        try:
            for time, frame in source:
                if writer is None:  # the first frame fixed the output size
                    writer = _Writer(part, settings, fps, frame.width, frame.height, threads)
                writer.show(time, frame)
            if writer is None:
                raise VideoError("unreadable: no frame could be decoded")
            duration = source.duration()
            frames = writer.finish(duration)
        except BaseException:
            if writer is not None:
                writer.close(quiet=True)  # the part file is deleted by the caller
            raise
    return {"frames": frames, "fps": fps, "width": writer.width, "height": writer.height,
            "duration": float(duration), "source_frames": source.count}


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) of the output for a ``width`` x ``height`` source: short side
    ``short_side``, aspect kept, both even (see the module docstring)."""
    if short_side is None:
        return max(2, width - width % 2), max(2, height - height % 2)
    if width <= height:
        return short_side, max(2, 2 * round(height * short_side / width / 2))
    return max(2, 2 * round(width * short_side / height / 2)), short_side


class _TimedFrames:
    """Iterate ``(time, frame)`` over a stream's decoded frames: decoder order, each frame given
    the next of the sorted timestamps (see the module docstring), time in seconds (Fraction)
    from the first, each frame already scaled to the output size (yuv420p), so the reorder
    window holds small frames. Raises VideoError on a decode error."""

    def __init__(self, container, stream, nominal_fps, short_side):
        self.container, self.stream, self.short_side = container, stream, short_side
        self.tb = stream.time_base or Fraction(1, 1000000)
        self.tick = max(1, round(1 / (Fraction(nominal_fps) * self.tb)))  # one nominal frame, in tb
        self.count = 0
        self.size = None  # output (width, height), from the first frame
        self.first = self.last = self.last_duration = None

    def __iter__(self):
        window, stamps = deque(), []  # frames waiting for a timestamp; the timestamps not handed out
        previous_pts, newest = None, None  # newest: (pts, duration) of the latest timestamp seen
        decoded = self.container.decode(self.stream)
        while True:
            try:
                frame = next(decoded, None)
            except Exception as e:
                raise VideoError(f"unreadable: decode error after {self.count} frames ({describe(e)})") from None
            if frame is None:
                break
            self.count += 1
            pts = frame.pts
            if pts is None:  # no timestamp at all: one nominal frame after the previous one
                pts = 0 if previous_pts is None else previous_pts + self.tick
            previous_pts = pts
            if newest is None or pts >= newest[0]:
                newest = (pts, frame.duration)
            if self.size is None:
                self.size = output_size(frame.width, frame.height, self.short_side)
            heapq.heappush(stamps, pts)
            window.append(frame.reformat(*self.size, "yuv420p", interpolation="BICUBIC"))
            if len(window) > REORDER_WINDOW:
                yield self._time(heapq.heappop(stamps)), window.popleft()
        while window:
            yield self._time(heapq.heappop(stamps)), window.popleft()
        if newest is not None:
            self.last_duration = newest[1] if newest[1] and newest[1] > 0 else self.tick

    def _time(self, pts: int) -> Fraction:
        if self.first is None:
            self.first = pts
        pts = max(pts, self.last if self.last is not None else pts)  # never back in time
        self.last = pts
        return (pts - self.first) * self.tb

    def duration(self) -> Fraction:
        """Seconds from the first frame's start to the last frame's end (after iterating)."""
        return (self.last - self.first + self.last_duration) * self.tb


class _Writer:
    """Encode a constant-rate stream from timed source frames: ``show(time, frame)`` in time
    order, then ``finish(duration)``. Output frame k is the last frame shown at or before k/fps."""

    def __init__(self, path: Path, settings: dict, fps: Fraction, width: int, height: int, threads: int):
        encoder, _, fmt = CODECS[settings["codec"]]
        self.fps, self.gop, self.width, self.height = fps, settings["gop"], width, height
        gop = str(self.gop)
        if settings["codec"] == "h264":
            options = {"preset": "veryfast", "crf": str(settings["crf"]), "bf": "0", "g": gop,
                       "keyint_min": gop, "sc_threshold": "0",
                       "x264-params": "scenecut=0:open-gop=0", "threads": str(threads)}
            container_options = {"movflags": "+faststart"}  # index first: readable while streaming
        else:
            # realtime + cpu-used 8: libvpx's fastest; no lag and no alt-ref, so no hidden frames
            # and one packet per shown frame; row-mt lets the threads work on one frame.
            options = {"deadline": "realtime", "cpu-used": "8", "crf": str(settings["crf"]), "b:v": "0",
                       "g": gop, "keyint_min": gop, "lag-in-frames": "0", "auto-alt-ref": "0",
                       "row-mt": "1", "threads": str(threads)}
            container_options = {}
        self.out = av.open(str(path), "w", format=fmt, container_options=container_options)
        try:
            self.stream = self.out.add_stream(encoder, rate=fps, options=options)
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
            self.stream.codec_context.time_base = 1 / fps
        except Exception:
            self.out.close()
            raise
        self.next_k, self.current, self.held = 0, None, None
        self.closed = False

    def show(self, time: Fraction, frame):
        """Source ``frame`` is on screen from ``time`` (seconds, >= the previous frame's)."""
        if self.current is not None:
            while self.next_k < time * self.fps:  # output k shows current while k/fps < time
                self._emit(self.current)
        self.current = frame

    def _emit(self, frame):
        # Held back by one: the last source frame can reach one output frame past
        # round(duration * fps), which is only known at the end.
        if self.held is not None:
            self._encode(*self.held)
        self.held = (self.next_k, frame)
        self.next_k += 1

    def _encode(self, k: int, frame):
        frame.pts, frame.time_base = k, 1 / self.fps
        # Forced keyframes on top of g = keyint_min = gop with scene cuts off: the encoders place
        # keyframes on exactly these frames.
        frame.pict_type = av.video.frame.PictureType.I if k % self.gop == 0 else av.video.frame.PictureType.NONE
        try:
            for packet in self.stream.encode(frame):
                self.out.mux(packet)
        except Exception as e:
            raise VideoError(f"encode failed: at output frame {k} ({describe(e)})") from None

    def finish(self, duration: Fraction) -> int:
        """Pad with the last frame up to round(duration * fps) frames, flush; returns the count."""
        total = max(1, int(duration * self.fps + Fraction(1, 2)))
        while self.next_k < total:
            self._emit(self.current)
        if self.held is not None and self.held[0] < total:
            self._encode(*self.held)
        self.held = None
        try:
            for packet in self.stream.encode():
                self.out.mux(packet)
        except Exception as e:
            raise VideoError(f"encode failed: flushing the encoder ({describe(e)})") from None
        self.close()
        return total

    def close(self, quiet: bool = False):
        """Close the output (writes the trailer); ``quiet``: after a failure, ignore its errors."""
        if not self.closed:
            self.closed = True
            try:
                self.out.close()
            except Exception as e:
                if not quiet:
                    raise VideoError(f"encode failed: closing the output ({describe(e)})") from None


# ----------------------------------------------------------------------------------------------
# A tree


def _prepare_outcome(src: Path, dst: Path, settings: dict, threads: int) -> tuple[str, object]:
    """Run in a worker: ('done', info) or ('failed', reason). Never raises, so one bad file
    cannot stop the pool, and only plain data is pickled back."""
    try:
        return "done", prepare_video(src, dst, threads=threads, **settings)
    except VideoError as e:
        return "failed", e.reason
    except Exception as e:
        return "failed", f"unreadable: preparing failed ({describe(e)})"


def prepare_tree(src, dst, codec: str = "h264", short_side: int | None = None, gop: int = DEFAULT_GOP,
                 fps=None, workers: int | None = None, progress: bool = True,
                 crf: int | None = None) -> PrepareReport:
    """Prepare every video under ``src`` (``find_videos``) into ``dst``, keeping relative paths.

    ``codec``: 'h264' (.mp4) or 'vp9' (.webm); ``short_side``: even size of the short side, or
    None to keep the size; ``gop``: keyframe interval in frames; ``fps``: output rate, or None
    for each source's own nominal rate; ``workers``: processes (default min(8, CPUs); 1 = in this
    process); ``crf``: quality, None for the codec's default (``DEFAULT_CRF``).
    Skips sources whose output exists, writes ``dst/prepare.failures.csv``, prints a summary
    (and a tqdm bar if ``progress``) and returns a PrepareReport. Raises ValueError for bad
    arguments, a missing or empty ``src``, or a ``dst`` prepared earlier with other settings.
    """
    settings = check_settings(codec, short_side, gop, fps, crf)
    if workers is not None and not (_is_int(workers) and workers > 0):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ValueError(f"src: {src}: no such folder")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ValueError(f"dst: {dst} is inside src {src}; the outputs would be taken for sources on a rerun")
    try:
        sources = find_videos(src)
    except ManifestError as e:
        raise ValueError(f"src: {e}") from None
    workers = workers or min(8, os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // workers)

    dst.mkdir(parents=True, exist_ok=True)
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

    outcomes = _run_all(todo, settings, workers, threads, progress)
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


def _run_all(todo: dict, settings: dict, workers: int, threads: int, progress: bool) -> dict:
    def crashed(src):  # the crash may have left a half-written part file
        part_path(todo[src]).unlink(missing_ok=True)
        return "failed", "unreadable: the decoder or encoder crashed the worker process"

    jobs = {src: (src, out, settings, threads) for src, out in todo.items()}
    return run_per_file(_prepare_outcome, jobs, workers, "preparing videos", crashed, progress)


def _settings_record(settings: dict) -> dict:
    fps = settings["fps"]
    return {**settings, "fps": None if fps is None else str(fps)}


def _check_settings_file(dst: Path, settings: dict):
    """Record the settings in DST, or refuse if DST holds outputs made with other settings."""
    path, record = dst / SETTINGS_NAME, _settings_record(settings)
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if isinstance(old, dict):
            differ = {k: (old.get(k), v) for k, v in record.items() if old.get(k) != v}
            if differ:
                details = ", ".join(f"{k} {a!r} there, {b!r} now" for k, (a, b) in differ.items())
                raise ValueError(f"dst: {dst} holds videos prepared with other settings ({details}); "
                                 f"use another folder or empty it")
            return
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _remove_parts(dst: Path) -> int:
    """Delete the ``.NAME.part.EXT`` leftovers of an interrupted run; returns how many."""
    removed = 0
    for folder, _, files in os.walk(dst):
        for name in files:
            if _PART_RE.match(name):
                (Path(folder) / name).unlink(missing_ok=True)
                removed += 1
    return removed


def _write_failures(report: PrepareReport):
    with open(report.failures_csv, "w", newline="", encoding="utf-8") as f:
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
