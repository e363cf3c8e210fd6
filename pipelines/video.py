"""DALI video pipelines: TimeCLR's views of each video, decoding only the frames they need.

Per sample, a small Python source (one call per video, never per frame) reads the encoded file
and picks the frame indices of every view with ``frame_selection`` (seeded from
(seed, epoch, video index), so batches are reproducible and resumable); on the CPU it also cuts
a VP8/VP9 file down to the GOPs those frames need (``gop.py``: DALI 2.4's CPU decoder does not
seek, so without this a frame near the end costs the whole video). The DALI graph then

    decodes the union of all views' frames in ONE ``fn.decoders.video`` call, each distinct
        frame once and in file order ('mixed' = NVDEC on a GPU, 'cpu' without one: the same graph),
    gathers each view's frames from them in the view's order (``fn.sequence_rearrange``),
    augments each view with parameters drawn per view and shared by all its frames
        (random resized crop, flip, colour jitter, grayscale, optional blur; the parameters are
        drawn by ``augment.view_params`` in the source, so batches are reproducible),
    normalises to float, layout (C, T, H, W),

and ``VideoLoader`` hands the batches over as torch tensors on the pipeline's device.

Eval mode (``data.train=false``) is deterministic: each view shows its centred clip, the short side
resized to ``data.short_side`` and the centre cropped. Multi-view testing asks for more views of
the same video: a view's ``clip``/``clips`` pick clip k of C (``frame_selection``) and its
``crop``/``crops`` (crops > 1) a square crop along the frame's long side, left/top first. The source
computes that crop as a box relative to the frame (``eval_crop_box``: it knows each video's
orientation) and hands it over in the view's parameter slots [0:4], where training puts its random
crop; the graph resizes the box to the crop size, the same op as training's random resized crop.
All views of a video still come from one decode of the union of their frames.

One decode call per video matters: each call demuxes and indexes the file, and two views' frames
often share keyframes (measured while planning: 7.7 clips/s with one call per view, 11.5 with one
call on the union, 2 threads, VP9).

Epochs and shards: the video order of epoch e is a permutation drawn from (seed, e); shard s of
W takes every W-th video of it, so the W shards see every video exactly once per epoch. The last
batch of a shard may be partial. With ``drop_last`` every shard yields the same number of full
batches (what DDP needs); the videos that do not fill a batch are left for later epochs.
"""
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from timeclr.pipelines import augment, gop
from timeclr.pipelines.culprits import find_culprits
from timeclr.pipelines.frame_selection import view_indices
from timeclr.pipelines.manifest import read_manifest


@dataclass
class Video:
    path: str
    label: int
    num_frames: int
    width: int | None = None  # frame size; probed with PyAV when not given
    height: int | None = None
    bytes: int | None = None  # file size when indexed; a different size now means the file was damaged
    codec: str | None = None  # FFmpeg's codec name; None: not known (then trimming probes it)

    def size(self):
        if self.width is None or self.height is None:
            import av

            with av.open(self.path) as c:
                stream = c.streams.video[0]
                self.width, self.height = stream.codec_context.width, stream.codec_context.height
        return self.height, self.width


class ClipSource:
    """Per-sample callback for ``fn.external_source(batch=False)``.

    An endless stream: stream position k is position ``k % epoch_len`` of epoch ``k // epoch_len``,
    so DALI can prefetch across the end of an epoch. Positions past the shard's videos pad the last
    batch (they repeat a video and carry index −1; ``VideoLoader`` drops them).

    Returns (encoded bytes uint8, frame indices of all views int32, the sorted distinct frames to
    decode int32, where each requested frame sits among those int32, augmentation parameters
    (V, augment.PARAMS) float32, label int64, index int64).

    Damaged videos: ``skip`` maps manifest indices to the reason they are skipped; a skipped
    video's place is taken by the next usable video of the epoch's order. A file whose size
    differs from the manifest's is added here (DALI would decode a cut file into black frames
    without an error); ``VideoLoader`` adds the ones DALI fails on. ``on_skip(index, reason)``
    is called once for each.
    """

    def __init__(self, videos, views, train, seed, batch_size, shard_id=0, num_shards=1, drop_last=False,
                 start=0, skip=None, on_skip=None, trim_gops=True, short_side=None):
        if not videos:
            raise ValueError("no videos to read: the manifest is empty")
        from omegaconf import OmegaConf

        # plain dicts: omegaconf's item access cost more than the rest of a call here (0.7 -> 0.4 ms)
        views = [OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for v in views]
        self.videos, self.views, self.train, self.seed = videos, views, train, seed
        self.trim_gops, self.short_side = trim_gops, short_side  # short_side: for test crops (eval mode)
        self.layouts = gop.LayoutCache()
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
        return np.concatenate([view_indices(v, video.num_frames, self.train, rng) for v in self.views])

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

    def index_at(self, position: int) -> tuple[int, int, bool]:
        """(epoch, manifest index, is padding) of stream ``position``, skipped videos replaced."""
        epoch, pos = divmod(position, self.epoch_len)
        order = self.order(epoch)
        start = min(pos, len(order) - 1)
        for k in range(len(order)):  # the next usable video of the epoch's order
            index = int(order[(start + k) % len(order)])
            if index not in self.skip:
                return epoch, index, pos >= len(order)
        raise RuntimeError(f"every video of shard {self.shard_id} is damaged: {sorted(self.skip.items())[:5]} ...")

    def _read(self, position):
        while True:
            epoch, index, padding = self.index_at(position)
            video = self.videos[index]
            try:
                data = np.fromfile(video.path, dtype=np.uint8)
            except OSError as e:
                self.mark_bad(index, f"cannot read: {e}")
                continue
            if video.bytes is not None and data.size != video.bytes:
                self.mark_bad(index, f"size changed since indexing: {video.bytes} -> {data.size} bytes")
                continue
            return epoch, index, padding, data

    def __call__(self, info):
        epoch, index, padding, data = self._read(self.start + info.idx_in_epoch)
        data, frames, decode, where = self._decode_plan(index, epoch, data)
        params = self.params(index, epoch) if self.train else self.eval_params(index)
        return (data, frames, decode, where, params, np.int64(self.videos[index].label),
                np.int64(-1 if padding else index))

    def decoder_input(self, index: int, epoch: int):
        """(encoded bytes, frame indices) the decoder gets for video ``index`` in ``epoch``."""
        data, _, decode, _ = self._decode_plan(index, epoch, np.fromfile(self.videos[index].path, dtype=np.uint8))
        return data, decode

    def _decode_plan(self, index, epoch, data):
        video = self.videos[index]
        frames = self.frames(index, epoch).astype(np.int32)
        # Decode each needed frame once, in file order (the decoder then never seeks back), and
        # let DALI put them back in the views' order.
        decode, where = np.unique(frames, return_inverse=True)
        decode = decode.astype(np.int32)
        if self.trim_gops and video.codec in (None, *gop.TRIMMABLE):
            trimmed = gop.trim_to_gops(data, decode, video.num_frames, self.layouts(video.path, data))
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


def read_videos(manifest) -> list[Video]:
    """The manifest's rows as ``Video`` records, with absolute paths."""
    rows, _ = read_manifest(manifest)
    return [Video(r["abs_path"], int(r["label"]), int(r["num_frames"]), int(r["width"]), int(r["height"]),
                  r.get("bytes"), r.get("codec") or None) for r in rows]


def _view_graph(frames, params, view, data, random_aug, uint8):
    """DALI ops for one view: (T, H, W, C) uint8 decoded frames -> (C, T, S, S) float (or uint8
    (T, S, S, C)); ``params`` is the view's augmentation vector (layout in ``augment``)."""
    from nvidia.dali import fn, types

    size = view.crop_size
    mirror = 0
    crop = (size, size)
    if random_aug:
        frames = fn.resize(frames, size=[size, size], roi_start=params[0:2], roi_end=params[2:4], roi_relative=True)
        mirror = fn.cast(params[4], dtype=types.INT32)
        if view.jitter_prob > 0 or view.grayscale_prob > 0:
            frames = fn.color_twist(frames, brightness=params[5], contrast=params[6], saturation=params[7],
                                    hue=params[8])
        if view.blur_prob > 0:  # sigma 1e-3 makes a 1-pixel window: no blur when params[9] is 0
            frames = fn.gaussian_blur(frames, sigma=fn.cast(params[9], dtype=types.FLOAT) + 1e-3)
        crop = None
    elif not data.train and view.get("crops", 1) > 1:  # a test crop: the box ClipSource placed, resized
        frames = fn.resize(frames, size=[size, size], roi_start=params[0:2], roi_end=params[2:4], roi_relative=True)
        crop = None
    else:
        frames = fn.resize(frames, resize_shorter=data.short_side)
    if uint8:
        return fn.crop_mirror_normalize(frames, crop=crop, mirror=mirror, dtype=types.UINT8, output_layout="FHWC",
                                        mean=[0.0], std=[1.0])
    return fn.crop_mirror_normalize(frames, crop=crop, mirror=mirror, dtype=types.FLOAT, output_layout="CFHW",
                                    mean=[255.0 * m for m in data.mean], std=[255.0 * s for s in data.std])


def build_pipeline(data, source: ClipSource, device_id=None, uint8=False):
    """The DALI pipeline for ``data`` (a DataConfig). Outputs: one tensor per view, then label,
    index, the frame indices of all views and the views' augmentation parameters."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = data.device == "gpu"
    if gpu and device_id is None:
        device_id = torch.cuda.current_device()

    @pipeline_def(batch_size=data.batch_size, num_threads=data.num_threads, device_id=device_id if gpu else None,
                  seed=data.seed, prefetch_queue_depth=PREFETCH)
    def graph():
        encoded, frame_idx, decode_idx, where, params, label, index = fn.external_source(
            source=source, num_outputs=7, batch=False,
            dtype=[types.UINT8, types.INT32, types.INT32, types.INT32, types.FLOAT, types.INT64, types.INT64])
        # pad_mode="none": a frame index past the file's end is an error, not a black frame (the
        # default 'constant' pads `frames=` requests too); the loader then finds the file with PyAV
        # and skips it
        distinct = fn.decoders.video(encoded, frames=decode_idx, device="mixed" if gpu else "cpu",
                                     pad_mode="none")  # (F, H, W, C)
        views, start = [], 0
        for v, view in enumerate(data.views):
            # (T, H, W, C): this view's frames, gathered straight from the decoded ones
            frames = fn.sequence_rearrange(distinct, new_order=where[start:start + view.frames])
            views.append(_view_graph(frames, params[v], view, data, random_aug=data.train and data.augment,
                                     uint8=uint8))
            start += view.frames
        return (*views, label, index, frame_idx, params)

    return graph()


MAX_RECOVERIES = 8
PREFETCH = 2  # the pipeline's prefetch_queue_depth


def _shard():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class VideoLoader:
    """Batches of V views of each video, one epoch per ``iter()``.

    Each batch is a dict: ``views`` (list of V tensors, (B, C, T, H, W) float, or (B, T, H, W, C)
    uint8 with ``uint8=True``), ``label`` (B,), ``index`` (B,) rows of the manifest and ``frames``
    (list of V (B, T) int tensors: the frame indices each view shows) and ``params`` ((B, V, P):
    each view's augmentation parameters, layout in ``augment``; identity when not augmenting, but
    for a test crop's box in eval mode).

    ``state_dict()`` / ``load_state_dict()`` give the reader's position, for resuming a run.
    """

    def __init__(self, data, videos=None, shard_id=None, num_shards=None, device_id=None, uint8=False):
        if videos is None:
            videos = read_videos(data.manifest)
        rank, world = _shard()
        self.data, self.device_id, self.uint8 = data, device_id, uint8
        self.shard_id = rank if shard_id is None else shard_id
        self.num_shards = world if num_shards is None else num_shards
        self.videos = videos
        self.epoch = 0
        self._pos = 0  # stream position of the next batch
        self._iter = None
        self.skipped = []  # (path, reason) of every damaged video skipped so far
        self.source = self._make_source(start=0)

    def _make_source(self, start, skip=None):
        d = self.data
        return ClipSource(self.videos, list(d.views), d.train, d.seed, d.batch_size, self.shard_id, self.num_shards,
                          d.drop_last, start=start, skip=skip, on_skip=self._log_skip,
                          trim_gops=d.trim_gops and d.device == "cpu", short_side=d.short_side)

    def _log_skip(self, index, reason):
        path = self.videos[index].path
        self.skipped.append((path, reason))
        warnings.warn(f"skipping damaged video {path}: {reason}", stacklevel=2)

    def __len__(self):
        return self.source.batches

    def state_dict(self):
        return {"epoch": self.epoch, "position": self._pos, "skip": dict(self.source.skip)}

    def load_state_dict(self, state):
        """Resume at a saved position (and with the damaged videos found so far); call before iterating."""
        self.epoch, self._pos = int(state["epoch"]), int(state["position"])
        self.source = self._make_source(start=self._pos, skip=dict(state.get("skip", {})))
        self._iter = None

    def _dali_iter(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        if self._iter is None:
            pipe = build_pipeline(self.data, self.source, self.device_id, self.uint8)
            names = [f"view{v}" for v in range(len(self.data.views))] + ["label", "index", "frames", "params"]
            self._iter = DALIGenericIterator(pipe, names)  # endless: the source never stops
        return self._iter

    def _next_batch(self):
        """The next batch from DALI. A video that fails to decode although it passed indexing
        is found (``culprits``: PyAV, then DALI's decoder on each video alone), logged, skipped,
        and the pipeline rebuilt at the same position."""
        for _ in range(MAX_RECOVERIES):
            try:
                return next(self._dali_iter())[0]
            except RuntimeError as e:
                if "Critical error in pipeline" not in str(e):
                    raise
                error = e
            # DALI runs up to `prefetch_queue_depth` batches ahead: any of them may hold the culprit
            B = self.data.batch_size
            window = {}
            for p in range(self._pos, self._pos + (PREFETCH + 1) * B):
                epoch, index, _ = self.source.index_at(p)
                window.setdefault(index, epoch)
            bad = find_culprits(window, self.videos, self.source.decoder_input, self.data.device, self.device_id)
            if not bad:
                raise RuntimeError(f"DALI failed on a batch whose videos all decode, with PyAV and alone "
                                   f"through DALI: {[self.videos[i].path for i in sorted(window)]}") from error
            for i, reason in bad.items():
                self.source.mark_bad(i, reason)
            self.source = self._make_source(start=self._pos, skip=self.source.skip)
            self._iter = None
        raise RuntimeError(f"gave up after {MAX_RECOVERIES} pipeline failures in a row") from error

    def __iter__(self):
        B = self.data.batch_size
        while self._pos < (self.epoch + 1) * self.source.epoch_len:
            out = self._next_batch()
            self._pos += B
            keep = out["index"].reshape(-1) >= 0  # padding only ever fills the end of the last batch
            n = int(keep.sum()) if not bool(keep.all()) else B
            frames = out["frames"][:n].cpu()
            splits = np.cumsum([0] + [v.frames for v in self.data.views])
            yield {
                "views": [out[f"view{v}"][:n] for v in range(len(self.data.views))],
                "label": out["label"].reshape(-1)[:n],
                "index": out["index"].reshape(-1)[:n],
                "frames": [frames[:, a:b] for a, b in zip(splits[:-1], splits[1:])],
                "params": out["params"][:n].cpu(),
            }
        self.epoch += 1
