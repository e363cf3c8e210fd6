"""The Python side of the video pipeline: per sample, what DALI decodes and how it augments it.

``ClipSource`` is called once per video (never per frame) by ``fn.external_source``. It reads
the stored video, picks the frame indices of every view (``frame_selection``, seeded from
(seed, epoch, video index), so batches are reproducible and resumable) and draws each view's
augmentation parameters (``augment.view_params``). What it hands DALI depends on how the videos
are stored (the manifest's ``codec`` column; one kind per manifest):

    a video file     the encoded bytes, the sorted distinct frames to decode, where each view
                     frame sits among them. On the CPU, a VP8/VP9 file is first cut down to the
                     GOPs those frames need (``gop.py``: DALI 2.4's CPU decoder does not seek,
                     so without this a frame near the end costs the whole video).
    a frame archive  (``codec`` jpeg, ``frame_archive.py``) the JPEG of every view frame, in
                     the views' order, read from the archive with one ``pread`` each: nothing
                     else of the file is read, and nothing is decoded that is not shown.

``pipelines/loader/video.py`` builds the DALI graph around it and the loader that iterates it.
"""
import math
import os
import zlib
from dataclasses import dataclass

import numpy as np

from timeclr.errors import VideoError
from timeclr.pipelines.loader import augment
from timeclr.pipelines.storage import frame_archive, gop
from timeclr.pipelines.loader.frame_selection import select_views
from timeclr.pipelines.storage.manifest import read_manifest


def storage_of(videos) -> str:
    """'archive' when every video is a frame archive, 'video' when none is; mixed is an error
    (one DALI graph decodes one kind)."""
    archives = sum(v.codec == frame_archive.CODEC for v in videos)
    if archives and archives != len(videos):
        first = next(v.path for v in videos if v.codec == frame_archive.CODEC)
        other = next(v.path for v in videos if v.codec != frame_archive.CODEC)
        raise ValueError(f"the manifest mixes frame archives ({first}) and video files ({other}): "
                         "prepare every video the same way, or index them into separate manifests")
    return "archive" if archives else "video"


@dataclass
class Video:
    path: str
    label: int
    num_frames: int
    width: int | None = None  # frame size; probed with PyAV when not given
    height: int | None = None
    bytes: int | None = None  # file size when indexed; a different size now means the file was damaged
    codec: str | None = None  # FFmpeg's codec name; None: not known (then trimming probes it)
    crc32: int | None = None  # the file's CRC-32 when indexed (video files: checked on every read)

    def size(self):
        if self.width is None or self.height is None:
            import av

            with av.open(self.path) as c:
                stream = c.streams.video[0]
                self.width, self.height = stream.codec_context.width, stream.codec_context.height
        return self.height, self.width


def plain_views(views) -> list:
    """The views' configs as plain dicts: omegaconf's item access cost more than the rest of a
    source call (0.7 -> 0.4 ms)."""
    from omegaconf import OmegaConf

    return [OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for v in views]


class ClipSource:
    """Per-sample callback for ``fn.external_source(batch=False)``.

    An endless stream: stream position k is position ``k % epoch_len`` of epoch ``k // epoch_len``,
    so DALI can prefetch across the end of an epoch. Positions past the shard's videos pad the last
    batch (they repeat a video and carry index −1; ``VideoLoader`` drops them).

    Returns, for video files, (encoded bytes uint8, frame indices of all views int32, the sorted
    distinct frames to decode int32, where each requested frame sits among those int32,
    augmentation parameters (V, augment.PARAMS) float32, label int64, index int64); for frame
    archives (``storage == 'archive'``), (one JPEG uint8 per view frame, in the views' order...,
    frame indices int32, parameters, label, index).

    Damaged videos: ``skip`` maps manifest indices to the reason they are skipped; a skipped
    video's place is taken by a usable video not already in the same batch (NT-Xent would
    treat a second copy as a negative of the first): the first of the epoch's order from the
    next batch on (wrapping around), other than the batch's members so far and its own videos
    still to come. Every rank's batches stay full (only when a shard has fewer usable videos
    than a batch does a batch repeat one). The rule depends on (epoch order, skip) alone, so a
    resumed or rebuilt pipeline finds the same replacements. A file whose size
    differs from the manifest's is added here (DALI would decode a cut file into black frames
    without an error); ``VideoLoader`` adds the ones DALI fails on. ``on_skip(index, reason)``
    is called once for each.
    """

    def __init__(self, videos, views, train, seed, batch_size, shard_id=0, num_shards=1, drop_last=False,
                 start=0, skip=None, on_skip=None, trim_gops=True, short_side=None):
        if not videos:
            raise ValueError("no videos to read: the manifest is empty")
        views = plain_views(views)
        self.videos, self.views, self.train, self.seed = videos, views, train, seed
        self.trim_gops, self.short_side = trim_gops, short_side  # short_side: for test crops (eval mode)
        self.packet_indexes = gop.PacketIndexCache()  # VP8/VP9 files' packet positions
        self.storage = storage_of(videos)
        self.indexes = frame_archive.IndexCache()  # frame archives' member tables
        self.shard_id, self.num_shards, self.start = shard_id, num_shards, start
        n = len(videos)
        self.shard_len = len(range(shard_id, n, num_shards))
        if drop_last:
            self.batches = (n // num_shards) // batch_size
            if self.batches == 0:
                raise ValueError(f"drop_last with {n} videos, {num_shards} shards and batch size {batch_size} "
                                 "leaves no full batch")
            self.shard_len = self.batches * batch_size
        else:
            self.batches = math.ceil(self.shard_len / batch_size)
        self.epoch_len = self.batches * batch_size
        self._orders = {}
        self.batch_size = batch_size
        self._members = {}  # (epoch, first position of a batch) -> the batch's videos so far
        self.skip = {} if skip is None else skip
        self.on_skip = on_skip or (lambda index, reason: None)

    def order(self, epoch: int) -> np.ndarray:
        """Manifest indices this shard visits in ``epoch``, in order."""
        if epoch not in self._orders:
            n = len(self.videos)
            perm = np.random.default_rng([self.seed, epoch]).permutation(n) if self.train else np.arange(n)
            self._orders = {epoch: perm[self.shard_id::self.num_shards][: self.shard_len]}
        return self._orders[epoch]

    def frames(self, index: int, epoch: int) -> np.ndarray:
        """The frame indices of every view of video ``index`` in ``epoch``, concatenated."""
        video = self.videos[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        return np.concatenate(select_views(self.views, video.num_frames, self.train, rng))

    def params(self, index: int, epoch: int) -> np.ndarray:
        """(V, augment.PARAMS) augmentation parameters of every view of video ``index`` in ``epoch``."""
        height, width = self.videos[index].size()
        rng = np.random.default_rng([self.seed, epoch, index, 1])  # independent of the frame draws
        return np.stack([augment.view_params(v, height, width, rng) for v in self.views])

    def eval_params(self, index: int) -> np.ndarray:
        """(V, augment.PARAMS) parameters in eval mode: identity, except the crop box of a view
        with test crops (``crops`` > 1), which ``eval_crop_box`` places along the long side."""
        params = np.tile(augment.IDENTITY, (len(self.views), 1))
        for v, view in enumerate(self.views):
            if view.get("crops", 1) > 1:
                height, width = self.videos[index].size()
                params[v, 0:4] = eval_crop_box(height, width, self.short_side, view["crop_size"], view["crop"],
                                               view["crops"])
        return params

    def mark_bad(self, index: int, reason: str):
        if index not in self.skip:
            self.skip[index] = reason
            self.on_skip(index, reason)
            self._members.clear()  # replacements are drawn again with the new skip list

    def index_at(self, position: int) -> tuple[int, int, bool]:
        """(epoch, manifest index, is padding) of stream ``position``, skipped videos replaced
        (see the class docstring)."""
        epoch, pos = divmod(position, self.epoch_len)
        order = self.order(epoch)
        if pos >= len(order):  # padding of the last batch (dropped by the loader): any usable video
            return epoch, self._usable(order, len(order) - 1, set()), True
        b0 = pos - pos % self.batch_size
        if (epoch, b0) not in self._members:  # only the batch being read is kept: the rule recomputes the rest
            self._members = {(epoch, b0): []}
        members = self._members[(epoch, b0)]
        while len(members) <= pos - b0:
            p = b0 + len(members)
            own = int(order[p])
            taken = set(members)
            if own in self.skip or own in taken:
                coming = {int(i) for i in order[p + 1:min(b0 + self.batch_size, len(order))]}
                start = min(b0 + self.batch_size, len(order)) % len(order)  # the next batch's first position
                own = self._usable(order, start, taken | coming, taken, set())
            members.append(own)
        return epoch, members[pos - b0], False

    def _usable(self, order, start: int, *excludes: set) -> int:
        """The first video of ``order`` from ``start`` on (wrapping) that is not skipped and not in
        the first of ``excludes`` that leaves one."""
        for exclude in excludes:
            for k in range(len(order)):
                index = int(order[(start + k) % len(order)])
                if index not in self.skip and index not in exclude:
                    return index
        raise RuntimeError(f"every video of shard {self.shard_id} is damaged: {sorted(self.skip.items())[:5]} ...")

    def _read(self, position):
        """(epoch, index, padding, what the decoder gets) of stream ``position``: a video file's
        bytes, or a frame archive's (frame indices, JPEGs of those frames)."""
        while True:
            epoch, index, padding = self.index_at(position)
            video = self.videos[index]
            try:
                if self.storage == "archive":
                    size = os.path.getsize(video.path)
                else:
                    data = np.fromfile(video.path, dtype=np.uint8)
                    size = data.size
                if video.bytes is not None and size != video.bytes:
                    self.mark_bad(index, f"size changed since indexing: {video.bytes} -> {size} bytes")
                    continue
                crc = zlib.crc32(data) if self.storage != "archive" and video.crc32 is not None else None
                if crc is not None and crc != video.crc32:
                    self.mark_bad(index, f"content changed since indexing: CRC-32 {crc:08x}, "
                                         f"the manifest says {video.crc32:08x} (same size: bytes overwritten)")
                    continue
                if self.storage == "archive":
                    frames = self.frames(index, epoch).astype(np.int32)
                    data = frames, frame_archive.read_frames(video.path, frames, self.indexes(video.path, size))
            except (OSError, VideoError) as e:
                self.mark_bad(index, f"cannot read: {e}")
                continue
            return epoch, index, padding, data

    def __call__(self, info):
        epoch, index, padding, data = self._read(self.start + info.idx_in_epoch)
        params = self.params(index, epoch) if self.train else self.eval_params(index)
        # 0-d arrays, not numpy scalars: DALI's parallel source workers take arrays only
        tail = (params, np.array(self.videos[index].label, np.int64), np.array(-1 if padding else index, np.int64))
        if self.storage == "archive":  # the JPEGs of the view frames, in the views' order
            frames, jpegs = data
            return (*jpegs, frames, *tail)
        data, frames, decode, where = self._decode_plan(index, epoch, data)
        return (data, frames, decode, where, *tail)

    def decoder_input(self, index: int, epoch: int):
        """What the decoder gets for video ``index`` in ``epoch``: (encoded bytes, frame indices to
        decode) of a video file, (list of JPEGs, their frame indices) of a frame archive."""
        video = self.videos[index]
        if self.storage == "archive":
            frames = self.frames(index, epoch)
            index_ = frame_archive.read_index(video.path)
            return frame_archive.read_frames(video.path, frames, index_), frames.astype(np.int32)
        data, _, decode, _ = self._decode_plan(index, epoch, np.fromfile(video.path, dtype=np.uint8))
        return data, decode

    def _decode_plan(self, index, epoch, data):
        video = self.videos[index]
        frames = self.frames(index, epoch).astype(np.int32)
        # Decode each needed frame once, in file order (the decoder then never seeks back), and
        # let DALI put them back in the views' order.
        decode, where = np.unique(frames, return_inverse=True)
        decode = decode.astype(np.int32)
        if self.trim_gops and video.codec in (None, *gop.TRIMMABLE):
            trimmed = gop.trim_to_gops(data, decode, video.num_frames, self.packet_indexes(video.path, data))
            if trimmed is not None:  # only the GOPs the views need, frames renumbered to match
                data, decode = trimmed
        return data, frames, decode, where.astype(np.int32).reshape(-1)


def eval_crop_box(height: int, width: int, short_side: int, crop_size: int, crop: int, crops: int) -> np.ndarray:
    """(y0, x0, y1, x1) relative to a ``height`` x ``width`` frame: the square that crop ``crop`` of
    ``crops`` covers when the short side is resized to ``short_side`` and ``crop_size`` squares are
    taken along the long side (landscape or square: left to right; portrait: top to bottom),
    evenly spaced from one end to the other, centred across. ``crops`` = 1 is the centre crop."""
    if not 0 <= crop < crops:
        raise ValueError(f"crop must be in [0, crops), got crop={crop}, crops={crops}")
    if crop_size > short_side:
        raise ValueError(f"test crops need crop_size <= short_side, got {crop_size} > {short_side}")
    side = crop_size * min(height, width) / short_side  # the crop's side in frame pixels
    along = crop / (crops - 1) if crops > 1 else 0.5  # 0: left/top, 1: right/bottom
    if width >= height:
        y0, x0 = (height - side) / 2, along * (width - side)
    else:
        y0, x0 = along * (height - side), (width - side) / 2
    return np.array([y0 / height, x0 / width, (y0 + side) / height, (x0 + side) / width], np.float32)


def read_videos_and_classes(manifest) -> tuple[list[Video], list[str]]:
    """The manifest's rows as ``Video`` records, with absolute paths, and its class names (label
    order), from one read of the manifest."""
    rows, classes = read_manifest(manifest)
    return videos_of(rows), classes


def videos_of(rows) -> list[Video]:
    """``Video`` records of manifest rows as ``read_manifest`` returns them."""
    return [Video(r["abs_path"], int(r["label"]), int(r["num_frames"]), int(r["width"]), int(r["height"]),
                  r.get("bytes"), r.get("codec") or None, r.get("crc32")) for r in rows]


def read_videos(manifest) -> list[Video]:
    """The manifest's rows as ``Video`` records, with absolute paths."""
    return read_videos_and_classes(manifest)[0]
