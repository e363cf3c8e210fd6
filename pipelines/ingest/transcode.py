"""Transcoding one video: re-encode it at a constant frame rate with a fixed keyframe interval.

Why: the pipelines select frames by index and treat index as time (``index / fps``), and DALI's
CPU decoder only gets fast by being handed the GOPs it needs (``pipelines/storage/gop.py``). Real files
break both: variable or lying frame rates (``tree.avi`` holds 68 frames over 29.6 s under a
header that claims 444), timestamps out of order, B-frames, keyframes hundreds of frames apart,
codecs DALI's CPU backend cannot decode. Re-encoding once fixes all of it for every later epoch.
``prepare_video`` does one file; ``timeclr.pipelines.ingest.prepare.prepare_tree`` a whole tree.

What an output is
    ``DST/<same relative path>`` with the extension of the codec (``.mp4`` for H.264, ``.webm``
    for VP9), holding one video stream (audio, subtitles and metadata are dropped), yuv420p; or,
    with codec ``jpeg``, a frame archive (``.tar``, ``frame_archive.py``): the same frames, each
    a JPEG of the given quality (the ``crf`` slot), so every frame stands alone (no GOPs):

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
    Frame archives: see ``frame_archive.DEFAULT_QUALITY`` and ``benchmarks/storage_layouts.py``.

Atomic outputs
    An output is written to a hidden temporary name next to it (``part_path``: ``.NAME.part.mp4``,
    hidden, so neither ``find_videos`` nor the indexer ever sees it) and renamed into place with
    ``os.replace`` only when complete, so an output that exists is finished: what lets
    ``prepare_tree`` resume by skipping the outputs that exist. Not ``timeclr.files.atomic``'s
    temporary name, because ``prepare_tree`` removes the parts an interrupted run left, by this
    fixed pattern (``PART_RE``), whichever process wrote them.

Reasons a source cannot be prepared (``VideoError.reason``): ``zero bytes``, ``not a video``,
``no video stream``, ``unreadable``, ``encode failed``, each then ``: details``.
"""
import heapq
import os
import re
from collections import deque
from fractions import Fraction
from pathlib import Path

import av

from timeclr.files.atomic import disk_full
from timeclr.errors import DiskFull, VideoError
from timeclr.pipelines.storage import frame_archive
from timeclr.pipelines.ingest.probe import describe, open_video

CODECS = {  # codec name -> (FFmpeg encoder, output extension, container format)
    "h264": ("libx264", ".mp4", "mp4"),
    "vp9": ("libvpx-vp9", ".webm", "webm"),
    "jpeg": (None, frame_archive.SUFFIX, "tar"),  # a frame archive (pipelines/storage/frame_archive.py)
}
DEFAULT_GOP = 16
# jpeg: the JPEG quality (1-95, Pillow's scale), in the crf slot; every frame is a keyframe
DEFAULT_CRF = {"h264": 20, "vp9": 32, "jpeg": frame_archive.DEFAULT_QUALITY}
CRF_RANGE = {"h264": (0, 51), "vp9": (0, 63), "jpeg": (1, 95)}
MAX_FPS_DENOMINATOR = 1001  # 30000/1001 (NTSC) is the most exotic rate worth keeping exactly
MAX_NOMINAL_FPS = 300  # a source "rate" above this is a container's time base, not a frame rate
REORDER_WINDOW = 16  # frames; packed B-frames in AVI displace timestamps by 1 or 2
PART_RE = re.compile(r"^\..+\.part\.(mp4|webm|tar)$")  # the names part_path gives


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
    if codec == "jpeg":
        gop = 1  # every frame of an archive stands alone
    return {"codec": codec, "short_side": short_side, "gop": gop, "fps": fps, "crf": crf}


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def part_path(out_path) -> Path:
    """The temporary name an output is written under until complete: ``.NAME.part.EXT``."""
    out_path = Path(out_path)
    return out_path.with_name(f".{out_path.stem}.part{out_path.suffix}")


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
    container, stream = open_video(src)
    with container:
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
        self.next_k, self.current, self.held = 0, None, None
        self.closed = False
        self.archive = None
        if settings["codec"] == "jpeg":
            self.archive = frame_archive.ArchiveWriter(path, fps, settings["crf"])
            return
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
        if self.archive is not None:
            self.archive.add(frame.to_ndarray(format="rgb24"))
            return
        frame.pts, frame.time_base = k, 1 / self.fps
        # Forced keyframes on top of g = keyint_min = gop with scene cuts off: the encoders place
        # keyframes on exactly these frames.
        frame.pict_type = av.video.frame.PictureType.I if k % self.gop == 0 else av.video.frame.PictureType.NONE
        try:
            for packet in self.stream.encode(frame):
                self.out.mux(packet)
        except Exception as e:
            raise _encode_failed(e, f"at output frame {k}") from None

    def finish(self, duration: Fraction) -> int:
        """Pad with the last frame up to round(duration * fps) frames, flush; returns the count."""
        total = max(1, int(duration * self.fps + Fraction(1, 2)))
        while self.next_k < total:
            self._emit(self.current)
        if self.held is not None and self.held[0] < total:
            self._encode(*self.held)
        self.held = None
        if self.archive is not None:
            self.close()
            return total
        try:
            for packet in self.stream.encode():
                self.out.mux(packet)
        except Exception as e:
            raise _encode_failed(e, "flushing the encoder") from None
        self.close()
        return total

    def close(self, quiet: bool = False):
        """Close the output (writes the trailer); ``quiet``: after a failure, ignore its errors."""
        if not self.closed:
            self.closed = True
            try:
                (self.archive or self.out).close()
            except Exception as e:
                if not quiet:
                    raise _encode_failed(e, "closing the output") from None


def _encode_failed(e: Exception, where: str) -> Exception:
    """What a failed write of the output raises: ``DiskFull`` for a full disk, which is no fault of
    the source and stops ``prepare_tree``, else this source's ``encode failed`` VideoError."""
    if disk_full(e):
        return DiskFull(f"{getattr(e, 'filename', None) or 'the output'}: {e.strerror or e}")
    return VideoError(f"encode failed: {where} ({describe(e)})")
