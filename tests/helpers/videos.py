"""Small test videos whose frames say their own index (``timeclr.pipelines.storage.index_pattern``:
``read_frame_index(decoded_rgb)`` tells which source frame a decoded one is), written with PyAV
(``encode.write_video``).
"""
import av
import numpy as np

from timeclr.pipelines.storage.encode import write_video
from timeclr.pipelines.storage.index_pattern import BITS, frame_index_image, read_frame_index

__all__ = ["BITS", "frame_index_image", "read_frame_index", "make_video", "make_archive", "make_audio_only",
           "decode_all"]


def make_video(path, num_frames: int, width: int = 80, height: int = 48, fps: int = 25,
               codec: str = "libvpx-vp9", gop: int = 12, frames=None) -> str:
    """Write ``num_frames`` index frames (or the first ``num_frames`` of the given RGB ``frames``)
    to ``path`` with ``timeclr.pipelines.storage.encode.write_video``; returns path.

    ``codec``: 'libvpx-vp9' (.webm, decodable by DALI's CPU backend), 'libvpx' (VP8), 'libx264'
    (.mp4), 'mpeg4'... or write_video's short names ('vp9', 'h264', ...).
    """
    images = (frame_index_image(i, width, height) if frames is None else frames[i] for i in range(num_frames))
    return write_video(path, images, codec=codec, fps=fps, gop=gop)


def make_archive(path, num_frames: int, width: int = 80, height: int = 48, fps: int = 25, quality: int = 90,
                 frames=None) -> str:
    """Write a frame archive (``timeclr.pipelines.storage.frame_archive``) of ``num_frames`` index frames
    (or of the given RGB ``frames``); returns path."""
    from timeclr.pipelines.storage.frame_archive import ArchiveWriter

    writer = ArchiveWriter(path, fps, quality)
    for i in range(num_frames):
        writer.add(frame_index_image(i, width, height) if frames is None else frames[i])
    writer.close()
    return str(path)


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
    """Every frame of ``path`` as (F, H, W, 3) uint8 RGB, decoded by PyAV; a frame archive's
    JPEGs by PyAV's (FFmpeg's) MJPEG decoder, independent of the Pillow that wrote them."""
    if str(path).endswith(".tar"):
        import tarfile

        with tarfile.open(str(path)) as tar:
            names = sorted(m.name for m in tar.getmembers() if m.name.endswith(".jpg"))
            out = []
            for name in names:
                ctx = av.CodecContext.create("mjpeg", "r")
                (frame,) = ctx.decode(av.Packet(tar.extractfile(name).read()))
                out.append(frame.to_ndarray(format="rgb24"))
        return np.stack(out)
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
