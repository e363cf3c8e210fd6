"""Frame archives: a video stored as one JPEG per frame, in a plain tar file.

Why: a compressed video with a keyframe every G frames makes frame f cost the decode of every
frame from its keyframe, on average (G + 1) / 2 frames for one shown. A segment view takes one
frame from each of K segments spread over the whole video, so it pays that for every frame. A
JPEG per frame costs exactly one decode per frame shown, wherever the frames sit, and DALI's
image decoder (libjpeg-turbo on the CPU, nvJPEG / the hardware JPEG decoder on a GPU) decodes it
without demuxing anything. The price is disk: JPEG does not use what consecutive frames share
(``benchmarks/storage_layouts.py`` measures both sides of that trade).

What a frame archive is (``NAME.tar``, written by ``python -m timeclr.data prepare --codec jpeg``)

    000000.jpg           frame 0, baseline JPEG, 4:2:0, RGB
    000001.jpg           frame 1
    ...
    info.json            {"format": "timeclr-frames", "version": 1, "fps": "30000/1001",
                          "num_frames": N, "width": W, "height": H, "quality": Q,
                          "crc32": [CRC-32 of each frame's JPEG]}  (older archives: no "crc32")

``info.json`` comes last because the frame count is known only at the end (writing it first
would need a second pass over the frames).

An uncompressed POSIX tar: ``tar -xf`` unpacks it, Python's ``tarfile`` reads it, and since tar
stores every member contiguously, frame k is the byte range ``[offset_k, offset_k + size_k)`` of
the file. The loader reads only the frames a sample needs with ``os.pread`` (16 small reads for
the two-view config, not a 5 MB file). The member table is read once per file (``IndexCache``).

An archive may come from elsewhere, so it is data: it is read by byte range, never extracted, and
all the same ``read_index`` refuses one holding a member whose name is absolute or has a ``..``
component (reason ``unsafe``), so what indexing, sharding and reading accept is safe to unpack.
"""
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from timeclr.errors import VideoError
from timeclr.pipelines.storage.lru import LRU
from timeclr.pipelines.storage.manifest import path_problem

SUFFIX = ".tar"
CODEC = "jpeg"  # the manifest's codec column for a frame archive
FORMAT, VERSION = "timeclr-frames", 1
# prepare's default JPEG quality: the best quality whose archives stay within 3x the bytes of the
# benchmark's VP9 (GOP 25) videos (2.7x; q75: 3.9x), at the archives' speed (docs/results.md, "Storage
# layouts"); on the real clips, whose VP9 files are smaller, it costs 5x. --crf 90 matches VP9's PSNR.
DEFAULT_QUALITY = 60


def frame_name(k: int) -> str:
    return f"{k:06d}.jpg"


class ArchiveWriter:
    """Write a frame archive frame by frame: ``add(rgb)`` in frame order, then ``close()``.

    ``rgb``: (H, W, 3) uint8. The file is written at ``path`` as given (the caller renames it
    into place when complete, as ``transcode`` does for its part files)."""

    def __init__(self, path, fps: Fraction, quality: int):
        self.path, self.fps, self.quality = str(path), Fraction(fps), quality
        self.tar = tarfile.open(self.path, "w", format=tarfile.PAX_FORMAT)
        self.count, self.size = 0, None
        self.crcs = []
        self.closed = False

    def add(self, rgb: np.ndarray):
        from PIL import Image

        if self.size is None:
            self.size = (rgb.shape[1], rgb.shape[0])
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=self.quality, subsampling="4:2:0")
        self._member(frame_name(self.count), buf.getvalue())
        self.crcs.append(zlib.crc32(buf.getvalue()))
        self.count += 1

    def _member(self, name: str, payload: bytes):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(payload), 0o644, 0
        self.tar.addfile(info, io.BytesIO(payload))

    def close(self):
        """Append ``info.json`` (frame count, size, fps, quality) and close the tar."""
        if self.closed:
            return
        self.closed = True
        try:
            width, height = self.size or (0, 0)
            info = {"format": FORMAT, "version": VERSION, "fps": str(self.fps), "num_frames": self.count,
                    "width": width, "height": height, "quality": self.quality, "crc32": self.crcs}
            self._member("info.json", json.dumps(info).encode())
        finally:
            self.tar.close()


@dataclass
class Index:
    """Where each frame's JPEG sits in an archive, and the archive's info.json."""

    offsets: np.ndarray  # (N,) int64 byte offset of frame k's JPEG
    sizes: np.ndarray  # (N,) int64
    info: dict
    bytes: int  # the file's size when read


def read_index(path, data: bytes | None = None) -> Index:
    """Read an archive's member table (headers only, no JPEG data), from the file ``path`` or,
    given ``data``, from the archive's bytes (``path`` then only names it). Raises VideoError
    naming what is wrong: not a tar, a member whose name leads outside the archive (``unsafe``),
    no info.json, frames missing or out of order, a cut file."""
    path = str(path)
    try:
        with (tarfile.open(path, "r:") if data is None else tarfile.open(fileobj=io.BytesIO(data), mode="r:")) as tar:
            members = tar.getmembers()
            # Every member, not only the frames read here: other tools may still unpack the file.
            unsafe = next((m.name for m in members if path_problem(m.name) not in (None, "empty")), None)
            if unsafe is not None:
                raise VideoError(f"unsafe: {path} holds member {unsafe!r}, whose name leads outside the "
                                 f"archive ({path_problem(unsafe)})")
            info_member = next((m for m in members if m.name == "info.json"), None)
            if info_member is None:
                raise VideoError(f"not a frame archive: {path} holds no info.json")
            info = json.loads(tar.extractfile(info_member).read())
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VideoError(f"not a frame archive: {type(e).__name__}: {e}") from None
    if info.get("format") != FORMAT:
        raise VideoError(f"not a frame archive: info.json says format {info.get('format')!r}, not {FORMAT!r}")
    frames = {m.name: m for m in members if m.name.endswith(".jpg")}
    n = int(info["num_frames"])
    missing = [frame_name(k) for k in range(n) if frame_name(k) not in frames]
    if missing or len(frames) != n:
        raise VideoError(f"truncated: info.json says {n} frames, the archive holds {len(frames)}"
                         + (f" (missing {missing[0]})" if missing else ""))
    members = [frames[frame_name(k)] for k in range(n)]
    size = os.path.getsize(path) if data is None else len(data)
    offsets = np.array([m.offset_data for m in members], np.int64)
    sizes = np.array([m.size for m in members], np.int64)
    if n and offsets[-1] + sizes[-1] > size:
        raise VideoError(f"truncated: frame {n - 1} runs past the end of the file ({size} bytes)")
    return Index(offsets, sizes, info, size)


class IndexCache(LRU):
    """``read_index`` per file, remembered for the ``capacity`` most recently used files (16
    bytes per frame), keyed by path and size: a file that changed is read anew."""

    def __call__(self, path, size: int) -> Index:
        return self.get((path, size), lambda: read_index(path))


def read_frames(path, frames, index: Index) -> list[np.ndarray]:
    """The JPEG bytes (uint8 arrays) of ``frames`` (frame indices, any order, repeats allowed):
    one ``os.pread`` per frame, nothing else of the file is read. Each is checked against its
    CRC-32 in ``info.json`` when the archive has them: VideoError for a changed frame."""
    crcs = index.info.get("crc32")
    fd = os.open(path, os.O_RDONLY)
    try:
        out = []
        for f in frames:
            size, offset = int(index.sizes[f]), int(index.offsets[f])
            data = os.pread(fd, size, offset)
            if len(data) != size:
                raise VideoError(f"truncated: frame {f} cut short ({len(data)} of {size} bytes)")
            if crcs is not None and zlib.crc32(data) != crcs[f]:
                raise VideoError(f"unreadable: frame {f}'s JPEG fails its CRC-32 check (changed after it was written)")
            out.append(np.frombuffer(data, np.uint8))
        return out
    finally:
        os.close(fd)


def decode_jpeg(data) -> np.ndarray:
    """One JPEG (bytes or uint8 array) -> (H, W, 3) uint8 RGB, with Pillow."""
    from PIL import Image

    with Image.open(io.BytesIO(bytes(data))) as im:
        return np.asarray(im.convert("RGB"))


def probe_archive(path) -> dict:
    """``probe_video``'s measurements of a frame archive: the member table is checked and every
    frame decoded once with Pillow (so a damaged JPEG is found at indexing, not mid-epoch).
    Raises VideoError."""
    index = read_index(path)
    info = index.info
    n, width, height = int(info["num_frames"]), int(info["width"]), int(info["height"])
    if n == 0:
        raise VideoError("unreadable: the archive holds no frames")
    for k, data in enumerate(read_frames(path, range(n), index)):
        try:
            shape = decode_jpeg(data).shape
        except Exception as e:  # Pillow raises several types for a damaged JPEG
            raise VideoError(f"unreadable: frame {k}: {type(e).__name__}: {e}") from None
        if shape[:2] != (height, width):
            raise VideoError(f"unreadable: frame {k} is {shape[1]}x{shape[0]}, info.json says {width}x{height}")
    fps = Fraction(info["fps"])
    return {"num_frames": n, "fps": float(fps), "duration": float(n / fps), "width": width, "height": height,
            "codec": CODEC, "vfr": False, "vfr_detail": None, "bytes": index.bytes}


def archive_problem(path, frames=None) -> str | None:
    """Why the archive's frames (all, or ``frames``) cannot be decoded, or None when they can."""
    try:
        index = read_index(path)
        wanted = range(len(index.sizes)) if frames is None else frames
        for data in read_frames(path, wanted, index):
            decode_jpeg(data)
    except VideoError as e:
        return str(e)
    except Exception as e:
        return f"fails to decode: {type(e).__name__}: {e}"
    return None
