"""Small test videos whose frames say their own index, written with PyAV (encode.write_video).

Frame i shows the binary digits of i as BITS vertical stripes (white = 1, black = 0, most
significant bit on the left), wide enough to survive lossy codecs, so a decoded frame tells
which source frame it is: ``read_frame_index(decoded_rgb)``.
"""
import av
import numpy as np

from timeclr.pipelines.encode import write_video

BITS = 10  # up to 1024 frames


def frame_index_image(i: int, width: int = 80, height: int = 48, bits: int = BITS) -> np.ndarray:
    """(height, width, 3) uint8 RGB frame showing the index i as stripes."""
    if not 0 <= i < 2 ** bits:
        raise ValueError(f"frame index {i} does not fit in {bits} bits")
    stripe = width // bits
    img = np.zeros((height, width, 3), np.uint8)
    left = (width - stripe * bits) // 2  # stripes centred, so a centre crop of the frame keeps them
    for b in range(bits):
        if (i >> (bits - 1 - b)) & 1:
            img[:, left + b * stripe:left + (b + 1) * stripe] = 255
    return img


def read_frame_index(img: np.ndarray, bits: int = BITS, stripe: int | None = None) -> int:
    """Inverse of frame_index_image for a decoded (H, W, 3) frame, or a centre crop of one that
    keeps the stripes, with ``stripe`` their width in pixels (default: the widest that fits)."""
    stripe = stripe or img.shape[1] // bits
    left = (img.shape[1] - stripe * bits) // 2
    centres = img[:, left + stripe // 2::stripe][:, :bits].astype(np.float32).mean(axis=(0, 2))
    return int(sum(1 << (bits - 1 - b) for b, v in enumerate(centres) if v > 127))


def make_video(path, num_frames: int, width: int = 80, height: int = 48, fps: int = 25,
               codec: str = "libvpx-vp9", gop: int = 12, frames=None) -> str:
    """Write ``num_frames`` index frames (or the first ``num_frames`` of the given RGB ``frames``)
    to ``path`` with ``timeclr.pipelines.encode.write_video``; returns path.

    ``codec``: 'libvpx-vp9' (.webm, decodable by DALI's CPU backend), 'libvpx' (VP8), 'libx264'
    (.mp4), 'mpeg4'... or write_video's short names ('vp9', 'h264', ...).
    """
    images = (frame_index_image(i, width, height) if frames is None else frames[i] for i in range(num_frames))
    return write_video(path, images, codec=codec, fps=fps, gop=gop)


def make_audio_only(path) -> str:
    """Write an .mp4 with one short AAC audio stream and no video; returns path."""
    path = str(path)
    with av.open(path, "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(4):
            frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            frame.sample_rate, frame.pts = 16000, i * 1024
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decode_all(path) -> np.ndarray:
    """Every frame of ``path`` as (F, H, W, 3) uint8 RGB, decoded by PyAV."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
