"""DALI video pipelines: TimeCLR's views of each video, decoding only the frames they need.

Per sample, a small Python source (``clip_source.ClipSource``: one call per video, never per
frame) reads what the views need of the stored video and picks the frame indices of every view.
The DALI graph then

    decodes the union of all views' frames: a video file in ONE ``fn.decoders.video`` call, each
        distinct frame once and in file order ('mixed' = NVDEC on a GPU, 'cpu' without one: the
        same graph); a frame archive (``frame_archive.py``) with ``fn.decoders.image`` on each
        view frame's JPEG (nvJPEG on a GPU), stacked into the same sequence,
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
import tempfile
import warnings

import numpy as np
import torch

from timeclr.pipelines.loader.clip_source import ClipSource, read_videos
from timeclr.pipelines.loader.culprits import find_culprits
from timeclr.pipelines.loader.shard_source import ShardSource


def _view_graph(frames, params, view, data, random_aug, uint8, cropped=False):
    """DALI ops for one view: (T, H, W, C) uint8 decoded frames -> (C, T, S, S) float (or uint8
    (T, S, S, C)); ``params`` is the view's augmentation vector (layout in ``augment``).
    ``cropped``: the frames were decoded as the crop box already (frame archives)."""
    from nvidia.dali import fn, types

    size = view.crop_size
    mirror = 0
    crop = (size, size)
    if random_aug:
        if cropped:
            frames = fn.resize(frames, size=[size, size])
        else:
            frames = fn.resize(frames, size=[size, size], roi_start=params[0:2], roi_end=params[2:4],
                               roi_relative=True)
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


def build_pipeline(data, source: ClipSource, device_id=None, uint8=False, source_workers=0):
    """The DALI pipeline for ``data`` (a DataConfig). Outputs: one tensor per view, then label,
    index, the frame indices of all views and the views' augmentation parameters.

    ``source_workers`` > 0 runs the source in that many DALI parallel external source processes
    instead of the pipeline's thread. Only ``benchmarks/storage_layouts.py`` uses it (it found no
    gain on 2 cores: the source takes ~2 % of a batch), and the config does not offer it: a damaged
    video found inside a worker process would be skipped there without the loader hearing of it."""
    from nvidia.dali import pipeline_def

    gpu = data.device == "gpu"
    if gpu and device_id is None:
        device_id = torch.cuda.current_device()
    random_aug = data.train and data.augment
    kw = dict(py_num_workers=source_workers, py_start_method="fork") if source_workers else {}
    source_options = {"parallel": True} if source_workers else {}

    @pipeline_def(batch_size=data.batch_size, num_threads=data.num_threads, device_id=device_id if gpu else None,
                  seed=data.seed, prefetch_queue_depth=PREFETCH, **kw)
    def graph():
        decode = _decode_archive if source.storage == "archive" else _decode_video
        per_view, frame_idx, params, label, index, cropped = decode(source, data, gpu, random_aug, source_options)
        views = [_view_graph(frames, params[v], view, data, random_aug, uint8, cropped)
                 for v, (view, frames) in enumerate(zip(data.views, per_view))]
        return (*views, label, index, frame_idx, params)

    return graph()


def _decode_video(source, data, gpu, random_aug, source_options):
    """Source and decode step for video files: ONE ``fn.decoders.video`` call per video on the
    sorted distinct frames of all views, then each view's frames gathered from them in the view's
    order. Returns ([(T, H, W, C) per view], frame indices, params, label, index, cropped=False)."""
    from nvidia.dali import fn, types

    encoded, frame_idx, decode_idx, where, params, label, index = fn.external_source(
        source=source, num_outputs=7, batch=False, **source_options,
        dtype=[types.UINT8, types.INT32, types.INT32, types.INT32, types.FLOAT, types.INT64, types.INT64])
    # pad_mode="none": a frame index past the file's end is an error, not a black frame (the
    # default 'constant' pads `frames=` requests too); the loader then finds the file with PyAV
    # and skips it
    distinct = fn.decoders.video(encoded, frames=decode_idx, device="mixed" if gpu else "cpu",
                                 pad_mode="none")  # (F, H, W, C)
    per_view, start = [], 0
    for view in data.views:
        per_view.append(fn.sequence_rearrange(distinct, new_order=where[start:start + view.frames]))
        start += view.frames
    return per_view, frame_idx, params, label, index, False


def _decode_archive(source, data, gpu, random_aug, source_options):
    """Source and decode step for frame archives: the source hands over one JPEG per view frame
    (F = the views' frames together, fixed by the config), each decoded by DALI's image decoder
    (nvJPEG on a GPU) and stacked into the same (T, H, W, C) sequence per view the video path
    gives. With random crops, each JPEG is decoded as its view's crop box only
    (``decoders.image_slice``: libjpeg-turbo skips the rest), which the view then only resizes
    (``cropped=True``). Returns what ``_decode_video`` does."""
    from nvidia.dali import fn, types

    F = sum(v.frames for v in data.views)
    *jpegs, frame_idx, params, label, index = fn.external_source(
        source=source, num_outputs=F + 4, batch=False, **source_options,
        dtype=[types.UINT8] * F + [types.INT32, types.FLOAT, types.INT64, types.INT64])
    device = "mixed" if gpu else "cpu"
    per_view, start = [], 0
    for v, view in enumerate(data.views):
        mine = jpegs[start:start + view.frames]
        if random_aug:  # anchor (y0, x0) and shape (y1 - y0, x1 - x0), relative to the frame
            box = params[v]
            frames = [fn.decoders.image_slice(j, box[0:2], box[2:4] - box[0:2], axis_names="HW", device=device,
                                              output_type=types.RGB) for j in mine]
        else:
            frames = [fn.decoders.image(j, device=device, output_type=types.RGB) for j in mine]
        per_view.append(fn.stack(*frames))
        start += view.frames
    return per_view, frame_idx, params, label, index, random_aug


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
        if videos is None and not data.get("shards"):
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
        kind, what = (ShardSource, d.shards) if d.get("shards") else (ClipSource, self.videos)
        extra = {"buffer": d.shuffle_buffer} if kind is ShardSource else {}
        return kind(what, list(d.views), d.train, d.seed, d.batch_size, self.shard_id, self.num_shards,
                    d.drop_last, start=start, skip=skip, on_skip=self._log_skip,
                    trim_gops=d.trim_gops and d.device == "cpu", short_side=d.short_side, **extra)

    def _log_skip(self, index, reason):
        path = self.source.videos[index].path
        self.skipped.append((path, reason))
        warnings.warn(f"skipping damaged video {path}: {reason}", stacklevel=2)

    def __len__(self):
        return self.source.batches

    def state_dict(self):
        """The reader's position as plain ints and strings: a checkpoint holds data only."""
        return {"epoch": int(self.epoch), "position": int(self._pos),
                "skip": {int(k): str(v) for k, v in self.source.skip.items()}}

    def load_state_dict(self, state):
        """Resume at a saved position (and with the damaged videos found so far); call before iterating."""
        self.epoch, self._pos = int(state["epoch"]), int(state["position"])
        self.source = self._make_source(start=self._pos, skip=dict(state.get("skip", {})))
        self._iter = None

    def _dali_iter(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        if self._iter is None:
            pipe = build_pipeline(self.data, self.source, self.device_id, self.uint8)
            names = [f"view{v}" for v in range(len(self.data.views))] + ["label", "index", "frame_indices", "params"]
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
                try:
                    epoch, index, _ = self.source.index_at(p)
                except KeyError:  # a shard stream's position not read yet: not in the failed batches
                    continue
                window.setdefault(index, epoch)
            bad = self._culprits(window)
            if not bad:
                raise RuntimeError(f"DALI failed on a batch whose videos all decode, with PyAV and alone "
                                   f"through DALI: {[self.source.videos[i].path for i in sorted(window)]}") from error
            for i, reason in bad.items():
                self.source.mark_bad(i, reason)
            self.source = self._make_source(start=self._pos, skip=self.source.skip)
            self._iter = None
        raise RuntimeError(f"gave up after {MAX_RECOVERIES} pipeline failures in a row") from error

    def _culprits(self, window):
        if not isinstance(self.source, ShardSource):
            return find_culprits(window, self.videos, self.source.decoder_input, self.data.device, self.device_id)
        with tempfile.TemporaryDirectory(prefix="timeclr-culprits-") as folder:  # PyAV and Pillow read files
            videos = self.source.materialize(window, folder)
            return find_culprits(window, videos, self.source.decoder_input, self.data.device, self.device_id)

    def __iter__(self):
        B = self.data.batch_size
        while self._pos < (self.epoch + 1) * self.source.epoch_len:
            out = self._next_batch()
            self._pos += B
            keep = out["index"].reshape(-1) >= 0  # padding only ever fills the end of the last batch
            n = int(keep.sum()) if not bool(keep.all()) else B
            frame_indices = out["frame_indices"][:n].cpu()
            splits = np.cumsum([0] + [v.frames for v in self.data.views])
            yield {
                "views": [out[f"view{v}"][:n] for v in range(len(self.data.views))],
                "label": out["label"].reshape(-1)[:n],
                "index": out["index"].reshape(-1)[:n],
                "frame_indices": [frame_indices[:, a:b] for a, b in zip(splits[:-1], splits[1:])],
                "params": out["params"][:n].cpu(),
            }
        self.epoch += 1
