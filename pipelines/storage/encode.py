"""Writing videos with PyAV: the one encode loop that the synthetic set, the tests and the
benchmarks share.

A caller hands RGB frames and says which codec, frame rate and keyframe interval it wants; the
file appears whole at ``path`` or not at all (written under a temporary name, then moved).
"""
from fractions import Fraction

import av
import numpy as np

from timeclr.files.atomic import atomic_path

# codec -> (PyAV encoder, encoder options). Low-latency settings: these are small files made in
# tests and benchmarks, where encode speed matters more than size.
ENCODERS = {
    "vp9": ("libvpx-vp9", {"crf": "10", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}),
    "vp8": ("libvpx", {"crf": "10", "b:v": "1M", "deadline": "realtime", "cpu-used": "8"}),
    "h264": ("libx264", {"crf": "10", "preset": "ultrafast", "bf": "0"}),
    "hevc": ("libx265", {"crf": "10", "preset": "ultrafast", "bframes": "0", "log-level": "error"}),
    "mpeg4": ("mpeg4", {"qscale": "2"}),
    "mjpeg": ("mjpeg", {}),
    "av1": ("libsvtav1", {"crf": "30", "preset": "11"}),
}
ENCODER_NAMES = {encoder: codec for codec, (encoder, _) in ENCODERS.items()}
PIX_FMT = {"mjpeg": "yuvj420p"}


def write_video(path, frames, codec: str = "vp9", fps: int = 25, gop: int = 12, pts=None, *,
                time_base=None, crf: int | None = None, options: dict | None = None,
                threads: int | None = None, pix_fmt: str | None = None) -> str:
    """Encode RGB frames to ``path`` (container from its suffix); returns ``str(path)``.

    Args:
        frames: (F, H, W, 3) uint8 array or any iterable of (H, W, 3) uint8 RGB images, all of one
            even-sided size.
        codec: 'vp9', 'vp8', 'h264', 'hevc', 'mpeg4', 'mjpeg', or a PyAV encoder name
            ('libvpx-vp9', 'libx264', ...).
        fps: nominal frame rate.
        gop: keyframe interval in frames (also the minimum, so GOPs are exactly ``gop`` long for
            VPx; x264 may still insert a keyframe at a scene cut).
        pts: optional presentation timestamps, one per frame, in units of ``time_base``
            (default ``1/fps``): for variable-frame-rate and irregular-timestamp test videos.
        crf: constant-rate quality, where the codec takes one (lower is better).
        options: extra encoder options, overriding the defaults.
        threads: encoder threads (None: PyAV's default; 1 when many videos encode side by side).
        pix_fmt: the stream's pixel format (default yuv420p; yuvj420p for MJPEG), e.g. yuv422p or
            yuv420p10le for videos a GPU decoder must refuse.

    Raises:
        ValueError: an unknown codec, or frames of the wrong shape or dtype.
    """
    codec = ENCODER_NAMES.get(codec, codec)
    if codec not in ENCODERS:
        raise ValueError(f"write_video: unknown codec {codec!r}; known: {sorted(ENCODERS)}")
    encoder, defaults = ENCODERS[codec]
    opts = dict(defaults)
    if crf is not None:
        opts["crf"] = str(crf)
    if codec.startswith("vp"):
        opts["keyint_min"] = str(gop)
    opts.update(options or {})
    time_base = Fraction(time_base) if time_base is not None else Fraction(1, fps)

    with atomic_path(path) as tmp, av.open(str(tmp), "w") as out:
        stream = None
        for i, img in enumerate(frames):
            img = np.ascontiguousarray(img)
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"write_video {path}: frame {i} is {img.dtype} {img.shape}, "
                                 "not (H, W, 3) uint8")
            if stream is None:  # opened at the first frame: its size is the video's
                stream = out.add_stream(encoder, rate=Fraction(fps), options=opts)
                stream.width, stream.height = img.shape[1], img.shape[0]
                stream.pix_fmt = pix_fmt or PIX_FMT.get(codec, "yuv420p")
                stream.gop_size = gop
                if threads is not None:
                    stream.thread_count = threads
                if pts is not None:
                    stream.codec_context.time_base = stream.time_base = time_base
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[i]), time_base
            out.mux(stream.encode(frame))
        if stream is None:
            raise ValueError(f"write_video {path}: no frames")
        out.mux(stream.encode())
    return str(path)
