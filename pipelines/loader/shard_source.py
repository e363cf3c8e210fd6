"""The per-sample source over WebDataset shards: ``ClipSource``'s outputs from a ``ShardStream``.

``ShardSource`` hands DALI exactly what ``ClipSource`` hands it for a file per video (the same
frame selection, augmentation parameters, GOP trimming and archive reads; only where the bytes
come from differs), so the graph, the views and the loader are the same. Per rank and epoch it
reads ``ShardStream.samples`` in order: the sample at stream position p is the p-th usable sample
of the rank's shuffled stream. DALI calls the source for positions in order; a call out of order
(a resumed or rebuilt pipeline) replays the epoch's stream up to that position, which is what
makes resume exact: the stream is a function of (seed, epoch, rank, world), and the skipped
videos are saved with the position. A sample's record carries where its packets or JPEGs sit
(``pipelines/storage/shards.py``), so nothing is demuxed. The manifest index of a file-per-video batch is
the sample number (the shard key) here.
"""
import math
import os
import zlib
from collections import OrderedDict

import numpy as np

from timeclr.pipelines.storage import frame_archive, gop
from timeclr.pipelines.loader.clip_source import ClipSource, Video, plain_views
from timeclr.pipelines.storage.shard_stream import ShardStream

KEEP = 256  # recent samples whose bytes are kept: the culprit finder's window of a failed batch


class ShardSource(ClipSource):
    """``ClipSource`` over the shard set at ``base`` for rank ``shard_id`` of ``num_shards``."""

    def __init__(self, base, views, train, seed, batch_size, shard_id=0, num_shards=1, drop_last=False,
                 start=0, skip=None, on_skip=None, trim_gops=True, short_side=None, buffer=64):
        self.views = plain_views(views)
        self.train, self.seed, self.trim_gops, self.short_side = train, seed, trim_gops, short_side
        self.stream = ShardStream(base, shard_id, num_shards, seed, buffer if train else 0)
        self.storage = self.stream.index.get("storage", "video")
        self.shard_id, self.num_shards, self.start = shard_id, num_shards, start
        n = len(self.stream)
        self.batches = n // batch_size if drop_last else math.ceil(n / batch_size)
        if self.batches == 0:
            raise ValueError(f"drop_last with {n} samples per rank and batch size {batch_size} leaves no full batch")
        self.epoch_len = self.batches * batch_size
        self.skip = {} if skip is None else skip
        self.on_skip = on_skip or (lambda index, reason: None)
        self.videos, self._kept, self._emitted = OrderedDict(), OrderedDict(), OrderedDict()
        self._at = None  # (epoch, next position, iterator) of the stream being read
        self._last = None  # the last sample served: what pads a batch the stream cannot fill

    def _sample(self, epoch: int, pos: int):
        """The sample at position ``pos`` of ``epoch`` (skipped keys left out), or None past the end."""
        if self._at is None or self._at[:2] != (epoch, pos):
            self._at = (epoch, 0, self.stream.samples(epoch))
        _, at, it = self._at
        for sample in it:
            if sample.key in self.skip:
                continue
            want = sample.record.get("crc32")
            got = zlib.crc32(sample.data) if want is not None else None
            if got is not None and got != want:  # changed since indexing (or in the shard)
                self._remember(sample)
                self.mark_bad(sample.key, f"content changed since indexing: CRC-32 {got:08x}, "
                                          f"the manifest said {want:08x} ({sample.shard})")
                continue
            if at == pos:
                self._at = (epoch, pos + 1, it)
                return sample
            at += 1
        self._at = (epoch, at, iter(()))
        return None

    def _remember(self, sample):
        rec = sample.record
        self.videos[sample.key] = Video(f"{sample.shard}#{sample.key}", int(rec["label"]), int(rec["num_frames"]),
                                        int(rec["width"]), int(rec["height"]), None, rec.get("codec") or None)
        self._kept[sample.key] = sample
        for d in (self.videos, self._kept):
            while len(d) > KEEP:
                d.popitem(last=False)

    def index_at(self, position: int) -> tuple[int, int, bool]:
        """(epoch, sample key, is padding) of a position this source has already served."""
        return self._emitted[position]

    def __call__(self, info):
        position = self.start + info.idx_in_epoch
        epoch, pos = divmod(position, self.epoch_len)
        sample = self._sample(epoch, pos)
        padding = sample is None  # the stream ran short (the last partial batch, or skipped videos)
        if padding:
            sample = self._last
        self._last = sample
        self._remember(sample)
        self._emitted[position] = (epoch, sample.key, padding)
        while len(self._emitted) > KEEP:
            self._emitted.popitem(last=False)
        key = sample.key
        params = self.params(key, epoch) if self.train else self.eval_params(key)
        tail = (params, np.array(self.videos[key].label, np.int64), np.array(-1 if padding else key, np.int64))
        data, frames, decode, where = self._plan(key, epoch)
        if self.storage == "archive":
            return (*data, frames, *tail)
        return (data, frames, decode, where, *tail)

    def _plan(self, key, epoch):
        sample = self._kept[key]
        data = np.frombuffer(sample.data, np.uint8)
        if self.storage == "archive":
            frames = self.frames(key, epoch).astype(np.int32)
            jpegs = sample.record["jpegs"]
            return [data[jpegs["offsets"][f]:jpegs["offsets"][f] + jpegs["sizes"][f]] for f in frames], frames, None, None
        return self._decode_plan(key, epoch, data)

    def packet_indexes(self, path, data):
        """The packet index from the sample's record (``_decode_plan`` asks here): no demuxing."""
        key = int(path.rsplit("#", 1)[1])
        rec, video = self._kept[key].record, self.videos[key]
        packets = rec.get("packets")
        fourcc = gop.TRIMMABLE.get(video.codec)
        if packets is None or fourcc is None:
            return None
        return gop.PacketIndex(fourcc, video.width, video.height, np.array(packets["offsets"], np.int64),
                               np.array(packets["sizes"], np.int64), np.array(packets["keyframe"], bool))

    def decoder_input(self, key: int, epoch: int):
        data, frames, decode, _ = self._plan(key, epoch)
        return (data, frames) if self.storage == "archive" else (data, decode)

    def materialize(self, keys, folder) -> dict:
        """{key: Video} of the kept samples ``keys`` written as files into ``folder``, for the
        culprit finder's PyAV / Pillow check of a failed batch."""
        out = {}
        for key in keys:
            sample, video = self._kept[key], self.videos[key]
            suffix = frame_archive.SUFFIX if video.codec == frame_archive.CODEC else ".video"
            path = os.path.join(folder, f"{key}{suffix}")
            with open(path, "wb") as f:
                f.write(sample.data)
            out[key] = Video(path, video.label, video.num_frames, video.width, video.height, None, video.codec)
        return out

