"""Probing one video: open and fully decode it with PyAV, measure it, or say why DALI cannot use it.

The indexer (``timeclr.pipelines.ingest.index``) probes every candidate of a tree with ``probe_video``
so that every file the pipelines see has been opened, fully decoded and measured once, and files
DALI cannot use are set aside with a reason instead of failing mid-epoch.

Measurements
    ``num_frames`` is counted by decoding every frame, never taken from the header (an AVI's
    header can claim 444 frames for a file that holds 68). ``duration`` (seconds) comes from the
    decoded frames' timestamps: last pts - first pts + the last frame's duration. ``fps`` is the
    stream's average (nominal) rate. ``codec`` is FFmpeg's codec name (h264, vp9, mpeg4...).
    ``vfr`` is True for a variable-frame-rate video (see below). ``bytes`` is the file's size.

Reasons: each starts with a stable keyword, then ``: details`` (``VideoError.reason``)
    ``zero bytes``, ``not a video`` (PyAV cannot open it), ``no video stream``,
    ``codec <name> not decodable on <device>`` (DALI's CPU backend decodes ``DALI_CODECS['cpu']``,
    its GPU "mixed" backend ``DALI_CODECS['gpu']``), ``unreadable`` (a decode error, or any
    other failure of the probe), ``truncated`` (the decoded frames end before
    ``TRUNCATED_FRACTION`` of the container's stated duration, or an MP4's boxes run past the end
    of the file, as interrupted downloads do). A frame archive (``frame_archive.probe_archive``)
    adds ``not a frame archive`` and ``unsafe`` (a member named absolute or with ``..``).
    The first failed check wins: a truncated H.264 file probed for the CPU is rejected for its
    codec, since that is checked before decoding.

Variable frame rate
    Segment and interval selection use frame index as time, which only holds at a constant frame
    rate. A video is flagged when its sorted frame timestamps are far from evenly spaced (a gap
    between consecutive frames outside [1/VFR_GAP_RATIO, VFR_GAP_RATIO] x the median gap) or its
    duration disagrees with num_frames / fps by more than VFR_DURATION_TOLERANCE. The probe only
    reports it; whether to keep such a video is the indexer's policy. The fix is to re-encode it
    at a constant rate with ``python -m timeclr.data prepare``.
"""
import os
import statistics
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av

from timeclr.errors import VideoError
from timeclr.pipelines.storage import frame_archive

# The file extensions that make a file a candidate video (compared lower-case).
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv"})

# What the indexer also takes: frame archives (pipelines/storage/frame_archive.py), prepare's JPEG output.
INDEX_EXTENSIONS = VIDEO_EXTENSIONS | {frame_archive.SUFFIX}

# What DALI's video decoders accept, by FFmpeg codec name (the codec, not the decoder library);
# "jpeg" is a frame archive, which DALI's image decoder reads on either device.
DALI_CODECS = {
    "cpu": frozenset({"vp8", "vp9", "mjpeg", frame_archive.CODEC}),
    # DALI 2.4's mixed backend goes through NVDEC: MJPEG is refused there (despite the operator's
    # docstring), and AV1 decodes only on chips whose NVDEC has it, which Hopper's does not
    "gpu": frozenset({"h264", "hevc", "mpeg4", "vp8", "vp9", frame_archive.CODEC}),
}
# NVDEC decodes 8-bit 4:2:0 only (of what these codecs carry), and each codec from a minimum
# frame size (NVIDIA's Video Codec SDK support matrix): smaller or other formats fail on the GPU
# although PyAV decodes them.
NVDEC_PIX_FMTS = frozenset({"yuv420p", "yuvj420p", "nv12"})
NVDEC_MIN_SIZE = {"h264": (48, 16), "hevc": (144, 144), "mpeg4": (48, 16), "vp8": (48, 16), "vp9": (128, 128)}

VFR_GAP_RATIO = 1.5
VFR_DURATION_TOLERANCE = 0.10
TRUNCATED_FRACTION = 0.90

PREPARE_HINT = "re-encode with python -m timeclr.data prepare"


def resolve_device(device: str) -> str:
    """'cpu' or 'gpu' for 'cpu', 'gpu' or 'auto' (gpu if torch sees CUDA)."""
    if device == "auto":
        import torch  # only here: probing needs no torch, and torch is slow to import

        return "gpu" if torch.cuda.is_available() else "cpu"
    if device not in DALI_CODECS:
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    return device


def describe(e: Exception) -> str:
    """An exception as ``Type: message``, for the details part of a reason."""
    return f"{type(e).__name__}: {e}"


def open_video(path):
    """``(container, stream)``: ``path`` opened with PyAV and its first video stream, or a
    ``VideoError`` whose reason says why not (zero bytes, truncated MP4, not a video, no video
    stream). The caller closes the container (``with container:``)."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"not a video: {path} is not a file")
    if path.stat().st_size == 0:
        raise VideoError("zero bytes")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as e:  # FFmpeg raises several types here; all mean "cannot open"
        cut = _mp4_cut_short(path)
        if cut:
            raise VideoError(f"truncated: {cut}") from None
        raise VideoError(f"not a video: PyAV cannot open it ({describe(e)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        raise VideoError(f"no video stream: {', '.join(kinds) or 'no'} streams only")
    return container, container.streams.video[0]


def probe_video(path, device: str | None = None) -> dict:
    """Open and fully decode one video with PyAV and measure it.

    Returns a dict with ``num_frames, fps, duration, width, height, codec, vfr, bytes, crc32`` (the
    manifest's measured columns; ``vfr`` a bool) and ``vfr_detail`` (why it is flagged, or None).
    With ``device`` 'cpu' or 'gpu', first checks that DALI can decode the codec there; with
    None, skips that check. Raises VideoError for an unusable file. A variable frame rate is
    reported, not rejected: that is the caller's policy.
    """
    path = Path(path)
    if path.suffix.lower() == frame_archive.SUFFIX:
        if path.stat().st_size == 0:
            raise VideoError("zero bytes")
        return {**frame_archive.probe_archive(path), "crc32": file_crc32(path)}
    container, stream = open_video(path)
    with container:
        codec = stream.codec_context.codec.canonical_name
        if device is not None and codec not in DALI_CODECS[device]:
            raise VideoError(
                f"codec {codec} not decodable on {device}: DALI's {device} backend decodes "
                f"{', '.join(sorted(DALI_CODECS[device]))}; {PREPARE_HINT}"
                + (" or index with --device gpu" if device == "cpu" and codec in DALI_CODECS["gpu"] else ""))
        if device == "gpu":
            _check_nvdec(stream, codec)
            if "avi" in container.format.name.split(","):
                # AVI keeps no presentation timestamps for packed B-frames (raw UCF101 / HMDB51
                # MPEG-4): DALI's mixed decoder may hand such frames back in decode order, so frame
                # index would not mean time. prepare re-encodes to MP4 without B-frames.
                raise VideoError(f"container avi not safe on gpu: its frames may decode out of order "
                                 f"(packed B-frames, no timestamps); {PREPARE_HINT}")
        frames = _decode_timing(container, stream)
        return {**_measure(container, stream, codec, frames), "bytes": path.stat().st_size, "crc32": file_crc32(path)}


def file_crc32(path) -> int:
    """The file's CRC-32 (``zlib.crc32``, unsigned), read in 1 MiB blocks: the manifest's ``crc32``."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            crc = zlib.crc32(block, crc)
    return crc


def _check_nvdec(stream, codec: str):
    """Refuse what NVDEC cannot decode although the codec is on the list: a pixel format other
    than 8-bit 4:2:0 (4:2:2, 4:4:4, 10-bit) or a frame below the codec's minimum size."""
    ctx = stream.codec_context
    pix_fmt = ctx.format.name if ctx.format is not None else None
    if pix_fmt not in NVDEC_PIX_FMTS:
        raise VideoError(f"codec {codec} {pix_fmt} not decodable on gpu: NVDEC decodes 8-bit 4:2:0 "
                         f"({', '.join(sorted(NVDEC_PIX_FMTS))}); {PREPARE_HINT}")
    min_w, min_h = NVDEC_MIN_SIZE[codec]
    if ctx.width < min_w or ctx.height < min_h:
        raise VideoError(f"codec {codec} {ctx.width}x{ctx.height} not decodable on gpu: NVDEC decodes "
                         f"{codec} from {min_w}x{min_h} up; {PREPARE_HINT} --short-side larger")


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
        raise VideoError(f"unreadable: decode error after {count} frames ({describe(e)})") from None
    if count == 0:
        raise VideoError("unreadable: no frame could be decoded")
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
            raise VideoError("unreadable: no frame rate (one frame, none stated)")
        duration = float(span + (last_duration * tb if last_duration else 1 / Fraction(fps)))
        vfr_detail = _vfr_detail([p for p, _ in times], n, float(fps), duration)
        _check_truncated(container, stream, first, duration)
    else:  # missing timestamps: trust the stated rate, and timing cannot be checked
        if not fps:
            raise VideoError("unreadable: neither a frame rate nor frame timestamps")
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
        raise VideoError(f"truncated: decoded frames end at {decoded_end:.2f} s of the "
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
