"""Hand the decoder only the GOPs it needs: remux a VP8/VP9 video into a short IVF stream.

Why: DALI 2.4's CPU ``fn.decoders.video`` does not seek. Asked for frame f, it decodes every
frame from the start of the file up to f (measured: frames=[0] 6 ms, [125] 74 ms, [249] 142 ms
per 340×256 VP9 video, ``benchmarks/data_pipeline.py``'s probe), so a view near the end of a
video costs the whole video. A decoder that starts at frame f's keyframe needs only the packets
of [keyframe(f), f]. So, per video and per sample, before DALI sees the bytes:

    packets    = demux(video)                        # no decoding; once per file (PacketIndexCache)
    gop(k)     = number of keyframes in packets[0..k]
    keep       = {k : k <= last wanted packet of gop(k)}   # each needed GOP, cut after its last wanted frame
    bytes'     = IVF(packets[keep])                  # a 32-byte header + 12 bytes per frame
    frame f    -> its position among ``keep``

and DALI decodes ``bytes'`` at the new positions: the same bitstream from the same keyframes, so
the same pixels (the tests compare both against each other and against PyAV).

IVF is the raw container of VP8 / VP9 (libvpx's own), readable by FFmpeg and so by DALI; it has
no index to build and costs microseconds to write. Other codecs are returned untouched: H.264 /
HEVC would need their parameter sets turned into an Annex-B stream, and on a GPU NVDEC's own
demuxing is what DALI uses. Frame index = packet index assumes no reordering and one frame per
packet, true for VP8 / VP9 in WebM; a file where the packet count differs from the manifest's
frame count is returned untouched.
"""
import io
import struct
from dataclasses import dataclass

import numpy as np

from timeclr.pipelines.storage.lru import LRU

TRIMMABLE = {"vp8": b"VP80", "vp9": b"VP90"}  # FFmpeg codec name -> IVF fourcc


def ivf(packets: list, fourcc: bytes, width: int, height: int) -> np.ndarray:
    """An IVF stream of ``packets``, frame k at timestamp k (time base 1/25: only the order matters)."""
    # IVF header: signature, version 0, header size 32, fourcc, width, height, time base
    # denominator and numerator, frame count, unused; then per frame: size (u32), timestamp (u64)
    parts = [struct.pack("<4sHH4sHHIIII", b"DKIF", 0, 32, fourcc, width, height, 25, 1, len(packets), 0)]
    for k, packet in enumerate(packets):
        parts.append(struct.pack("<IQ", len(packet), k))
        parts.append(packet.tobytes() if isinstance(packet, np.ndarray) else packet)
    return np.frombuffer(b"".join(parts), np.uint8)


@dataclass
class PacketIndex:
    """Where a VP8/VP9 video's packets sit in its file: enough to cut GOPs without demuxing again."""

    fourcc: bytes
    width: int
    height: int
    offsets: np.ndarray  # (P,) int64: byte offset of each packet's payload in the file
    sizes: np.ndarray  # (P,) int64
    keyframe: np.ndarray  # (P,) bool


def packet_index(data: np.ndarray) -> PacketIndex | None:
    """Demux ``data`` (a whole file, uint8) once: its packets' positions, or None when it is not
    a VP8/VP9 video or its packets cannot be located in the file's bytes."""
    import av

    raw = data.tobytes()
    try:
        with av.open(io.BytesIO(raw)) as container:
            stream = container.streams.video[0]
            fourcc = TRIMMABLE.get(stream.codec_context.name)
            if fourcc is None:
                return None
            offsets, sizes, keys = [], [], []
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                # The container's pos is the block's start; the payload follows its header.
                at = raw.find(bytes(packet), max(packet.pos or 0, 0))
                if at < 0:
                    return None  # laced or otherwise rewritten payloads: decode the whole file
                offsets.append(at)
                sizes.append(packet.size)
                keys.append(packet.is_keyframe)
            return PacketIndex(fourcc, stream.codec_context.width, stream.codec_context.height,
                          np.array(offsets, np.int64), np.array(sizes, np.int64), np.array(keys, bool))
    except (av.FFmpegError, IndexError, UnicodeDecodeError):
        return None  # DALI decodes (or rejects) the whole file, as without trimming


class PacketIndexCache(LRU):
    """``packet_index()`` per file, remembered for the ``capacity`` most recently used files (an
    index is ~13 bytes per frame): later epochs cut GOPs without demuxing."""

    def __call__(self, key, data: np.ndarray) -> PacketIndex | None:
        return self.get((key, data.size), lambda: packet_index(data))  # a file that changed size is demuxed anew


def trim_to_gops(data: np.ndarray, decode: np.ndarray, num_frames: int, packets: PacketIndex | None = None):
    """The encoded video ``data`` cut down to the packets a decoder needs for ``decode``.

    Args:
        data: the whole file, uint8.
        decode: the frames to show, sorted and distinct (int).
        num_frames: the video's frame count (the manifest's); a container whose packet count
            differs is not trimmed.
        packets: ``packet_index(data)``, if known (``PacketIndexCache``); demuxed here otherwise.

    Returns:
        (bytes, positions): an IVF stream and where each of ``decode`` sits in it, or None when
        the video cannot be trimmed (not VP8 / VP9, packets ≠ frames, or a demuxing error) and
        must be decoded whole.
    """
    packets = packet_index(data) if packets is None else packets
    if packets is None:
        return None
    if len(packets.sizes) != num_frames or not packets.keyframe[0] or len(decode) == 0 or decode[-1] >= num_frames:
        return None
    gop = np.cumsum(packets.keyframe)  # (num_frames,): GOP number of each packet
    last = np.full(gop[-1] + 1, -1)  # GOP number -> its last wanted frame (−1: none)
    np.maximum.at(last, gop[decode], decode)
    keep = np.flatnonzero(np.arange(num_frames) <= last[gop])  # (K,) packets kept, ascending
    positions = np.searchsorted(keep, decode).astype(np.int32)
    payloads = [data[o:o + n] for o, n in zip(packets.offsets[keep].tolist(), packets.sizes[keep].tolist())]
    return ivf(payloads, packets.fourcc, packets.width, packets.height), positions
