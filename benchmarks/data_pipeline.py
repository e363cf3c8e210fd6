"""Benchmark: TimeCLR's DALI video pipeline against the PyTorch DataLoader a user would write.

What is measured
----------------
Both loaders deliver the same thing: batches of 8 videos, each as two views of 8 frames
(view 0: segment selection, K = 8; view 1: interval selection, T = 8, stride 2 or 4), augmented
and normalised to float (C, T, 112, 112):

    dali   ``timeclr.pipelines.video.VideoLoader``: one ``fn.decoders.video`` call per video on
           all the frames of both views, then DALI's augmentation ops; ``num_threads = N``. The
           source hands DALI only the GOPs the views need (``pipelines/gop.py``: VP9 remuxed to
           IVF, frame indices renumbered), since DALI 2.4's CPU decoder does not seek (below)
    pyav   a ``torch.utils.data.DataLoader``, ``num_workers = N``, over a Dataset whose
           ``__getitem__`` takes the same frames and augmentation parameters (the library's
           ``ClipSource.frames`` / ``.params``: same numpy code, same seeds), opens the file with
           PyAV and decodes the sorted union of the frames with keyframe seeking: it seeks to the
           keyframe at or before the next wanted frame only when that keyframe lies beyond the
           decoder's position, so it decodes exactly the frames in [keyframe(f), f] for the wanted
           f, each once. It converts the wanted frames to RGB and applies the same operations as
           the DALI graph with torch (crop + resize with antialiasing, flip, brightness / contrast /
           saturation / hue), or the eval resize + centre crop
    dali-decode   (diagnostic) the DALI pipeline cut after ``fn.decoders.video``: the library's
           source, each distinct frame once in file order as the pipeline asks for them, no
           augmentation; how much of DALI's time the decode step takes
    dali-whole    (diagnostic) the same pipeline with ``data.trim_gops=false``: DALI gets the
           whole file, as before GOP trimming; what the trimming is worth
    dali-cold     (diagnostic) dali with the packet-layout cache off: every visit demuxes the
           file again (~3 ms in the Python source), as on a dataset larger than the cache
           (``gop.LayoutCache``, 10,000 files): what Kinetics-scale training sees on the CPU.
           The dali row (cache warm after the warm-up batches) is what a set of up to 10,000
           videos sees from its second epoch on

in two configurations:

    train  random frame positions, random resized crop 112 + flip + colour jitter (the training config)
    eval   deterministic positions, resize short side 128, centre crop 112

Both sides get the same N threads (default: the CPU cores): DALI's thread pool vs N worker
processes, each decoding with a single-threaded PyAV codec context.

Per (loader, config): **clips/s** (videos per second, each with both views) and **selected frames/s**
(16 per clip), timed over a fixed number of batches after a warm-up of N batches (the
DataLoader's N workers deliver their first batches together, so the timed window starts with
every worker on a fresh batch), in alternating rounds so that a change in the machine's load hits
every loader alike. Each timing window also records the share of the CPUs that *other* processes
used meanwhile ("others' CPU", from /proc): the pooled numbers leave out the rounds in which that
share exceeded 10% whenever an undisturbed round of the same loader and config exists ("rounds
used"); the per-round column shows every round.

The codec's ceiling, **raw decode**: every frame of every file decoded once by PyAV in N
processes, frames/s (also reported: with RGB conversion of every frame, and DALI decoding every
frame). **decode efficiency** = (frames a loader *must* decode per second) / (raw PyAV decode
rate), where a clip must decode, for each selected frame f, the frames from its keyframe: the size
of the union over f of [keyframe(f), f]. 1.0 would be a loader as fast as a decoder doing nothing
else; the rest goes to demuxing, seeking, colour conversion, augmentation, overheads and to
decoding frames that are not needed. Since both loaders must decode the same frames, the ratio of
their clips/s equals the ratio of their efficiencies.

**no-seek decode** is what a decoder decodes that never seeks forward, given each distinct frame
once in file order (as the pipeline asks): frames 0 to max f. The probe (below) shows that this is
DALI 2.4's CPU decoder; for dali-whole "no-seek eff." is then how close to the raw rate DALI
decodes the frames it actually decodes (for dali and pyav, which decode only what they must, it
means nothing).

A cheap probe times one ``fn.decoders.video`` call per video alone, for a few frame lists
([0], [24], [25], [125], [249], [125, 125], [249, 5]) with ``build_index`` True and False: does
the decoder seek to the keyframe, what does a repeated frame cost, what does the index cost?

On ``--device gpu`` DALI decodes with NVDEC ('mixed') and augments on the GPU; the baseline still
decodes on the CPU (its batches are copied to the GPU in the timed loop), and DALI's efficiency is
against its own all-frames NVDEC rate instead of PyAV's.

Data
----
A Kinetics-like set generated once and cached in ``data/bench_videos/`` (git-ignored): 10 s clips
at 25 fps (250 frames), 340x256, a panning textured background with a few moving ellipses and
per-frame sensor noise (so it compresses like footage, not like flat colour: ~1.1 Mbit/s), random
but deterministic per video. VP9 (.webm, libvpx realtime, crf 32) with a keyframe every 25
frames; ``--device gpu`` writes H.264 copies (.mp4, libx264, GOP 25, no B-frames) and measures
on those. Before timing, a one-off check decodes a video whose frames show their own index
(``tests/videos.py``) with the baseline's seeking and asserts that it returns exactly the wanted
frames while decoding exactly the frames counted as "must decode", and that on a generated video
it returns the same pixels as a plain decode of every frame; another asserts that GOP trimming
changes no pixel of the library pipeline's output (one eval batch, uint8; tests/test_gop.py
checks more).

How to run
----------
    python benchmarks/data_pipeline.py --quick           # ~2 min on 2 cores, generation included
    python benchmarks/data_pipeline.py                   # ~6 min on 2 cores (+20 s to generate)
    python benchmarks/data_pipeline.py --device gpu      # NVDEC + GPU augmentation vs PyAV workers
    python benchmarks/data_pipeline.py --threads 1 --json /tmp/dp.json

Writes ``benchmarks/results/data_pipeline_<device>[_quick].csv`` (metadata as '#' lines on top,
then the table, the raw decode rates and the probe as rows) and ``.png`` (clips/s; frames/s with
the efficiencies), prints the same, and with ``--json`` a summary: ``dali_over_pyav`` (training
config clips/s, DALI / PyAV), ``decode_efficiency`` (DALI, training config) and the raw numbers.
On a small shared machine other processes skew the numbers: see "others' CPU", the per-round
columns and the load averages in the metadata; the numbers of an undisturbed run are the ones to quote.
"""
import argparse
import bisect
import copy
import csv
import datetime
import gc
import json
import math
import multiprocessing
import os
import shlex
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from runinfo import device_name, git_rev, print_table
from timeclr.config import load_config
from timeclr.pipelines.video import ClipSource, Video, VideoLoader

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO / "data" / "bench_videos"

# the generated set: what Kinetics looks like after the usual "short side 256" resize
FPS, NUM_FRAMES, WIDTH, HEIGHT, GOP = 25, 250, 340, 256, 25
CODECS = {  # name -> (encoder, suffix, encoder options)
    "vp9": ("libvpx-vp9", "webm", {"crf": "32", "b:v": "0", "deadline": "realtime", "cpu-used": "8",
                                  "g": str(GOP), "keyint_min": str(GOP)}),
    "h264": ("libx264", "mp4", {"crf": "23", "preset": "veryfast", "bf": "0", "g": str(GOP),
                                "keyint_min": str(GOP), "sc_threshold": "0"}),
}
GENERATOR_VERSION = 1  # bump when the content or the encoding changes: cached videos are regenerated

# size of a run: (videos, rounds, timed batches per loader and round)
SIZES = {False: (32, 3, 20), True: (16, 2, 6)}
BATCH_SIZE = 8
CONFIGS = ("train", "eval")
LOADERS = ("dali", "pyav", "dali-decode", "dali-whole", "dali-cold")  # the last three: diagnostics (see the docstring)


def loaders(gpu: bool) -> tuple:
    """GOP trimming is CPU-only, so on a GPU dali-whole and dali-cold would repeat dali."""
    return LOADERS[:3] if gpu else LOADERS


# ---------------------------------------------------------------------------------------------
# the generated videos
# ---------------------------------------------------------------------------------------------


def _blur(a: np.ndarray, k: int) -> np.ndarray:
    """Separable box blur of width k over axes 0 and 1 (wrapping around), applied twice: close to a
    Gaussian, in numpy alone."""
    for _ in range(2):
        for axis in (0, 1):
            padded = np.concatenate([np.take(a, range(-k, 0), axis=axis), a], axis=axis)
            c = np.cumsum(padded, axis=axis, dtype=np.float32)
            n = a.shape[axis]
            a = (np.take(c, range(k, k + n), axis=axis) - np.take(c, range(0, n), axis=axis)) / k
    return a


def synthetic_frames(seed: int):
    """250 RGB frames (H, W, 3) uint8 of a video: a camera panning over a textured background,
    4 ellipses moving and bouncing, and a little temporal noise (as a sensor adds)."""
    rng = np.random.default_rng([20240607, seed])
    h2, w2 = 2 * HEIGHT, 2 * WIDTH  # the background is larger than the frame, so the camera can pan
    texture = _blur(rng.random((h2, w2, 3), dtype=np.float32), 24)
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-6)
    grain = rng.normal(0, 10, (h2, w2, 1)).astype(np.float32)  # fine static detail
    background = np.clip(30 + 190 * texture + grain, 0, 255).astype(np.uint8)
    pan = rng.uniform(0.5, 2.0, 2), rng.uniform(0, 2 * np.pi, 2)  # pan frequency (cycles/clip), phase
    shapes = []
    for _ in range(4):
        ry, rx = rng.integers(12, 45, 2)
        yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
        mask = (yy / ry) ** 2 + (xx / rx) ** 2 <= 1
        pos = rng.uniform([ry, rx], [HEIGHT - ry, WIDTH - rx])
        vel = rng.uniform(1, 4, 2) * rng.choice([-1, 1], 2)
        shapes.append([mask, pos, vel, rng.integers(0, 256, 3).astype(np.uint8), (ry, rx)])
    for t in range(NUM_FRAMES):
        phase = 2 * np.pi * pan[0] * t / NUM_FRAMES + pan[1]
        y0, x0 = (np.array([HEIGHT, WIDTH]) * (1 + np.sin(phase)) / 2).astype(int)
        img = background[y0:y0 + HEIGHT, x0:x0 + WIDTH].copy()
        for shape in shapes:
            mask, pos, vel, colour, (ry, rx) = shape
            cy, cx = pos.astype(int)
            img[cy - ry:cy + ry + 1, cx - rx:cx + rx + 1][mask] = colour
            pos += vel
            for d, (r, size) in enumerate([(ry, HEIGHT), (rx, WIDTH)]):  # bounce off the borders
                if not r <= pos[d] <= size - r - 1:
                    vel[d] = -vel[d]
                    pos[d] = np.clip(pos[d], r, size - r - 1)
        noise = rng.integers(-5, 6, (HEIGHT, WIDTH, 1), dtype=np.int16)
        yield np.clip(img + noise, 0, 255).astype(np.uint8)


def encode(path: Path, frames, codec: str):
    """Write RGB frames to ``path`` with a keyframe every GOP frames; writes to a temporary name
    first, so an interrupted run never leaves a truncated video in the cache."""
    encoder, _, options = CODECS[codec]
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream(encoder, rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.gop_size = GOP
        stream.options = dict(options)
        for img in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    tmp.rename(path)


def _generate(job):
    seed, path, codec = job
    encode(Path(path), synthetic_frames(seed), codec)


def video_path(codec: str, i: int) -> Path:
    return DATA_ROOT / f"{codec}_v{GENERATOR_VERSION}" / f"clip_{i:03d}.{CODECS[codec][1]}"


def ensure_videos(n: int, codec: str, threads: int) -> list[Path]:
    """The first n videos of the set in ``codec``, generating the ones not cached yet."""
    paths = [video_path(codec, i) for i in range(n)]
    todo = [(i, str(p), codec) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        with multiprocessing.get_context("fork").Pool(threads) as pool:
            for _ in tqdm(pool.imap_unordered(_generate, todo), total=len(todo), desc=f"generating {codec} videos",
                          leave=False, disable=None):
                pass
    return paths


@dataclass
class Keyframes:
    """Where a video's keyframes are: frame indices (sorted) and their pts, from one demux pass."""

    index: list[int]
    pts: list[int]
    num_frames: int
    first_pts: int

    def before(self, f: int) -> int:
        """Position in ``index`` of the keyframe at or before frame f."""
        return bisect.bisect_right(self.index, f) - 1


def frame_of(pts: int, first_pts: int, stream) -> int:
    """Frame index of a pts: frame k is shown at k / fps (constant frame rate)."""
    return round((pts - first_pts) * stream.time_base * stream.average_rate)


def keyframe_index(path) -> Keyframes:
    """Demux (no decoding: about a millisecond) and list the keyframes."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in c.demux(stream) if p.pts is not None]
        first = min(pts for pts, _ in packets)
        keys = sorted((frame_of(pts, first, stream), pts) for pts, key in packets if key)
    return Keyframes([k for k, _ in keys], [p for _, p in keys], len(packets), first)


def no_seek_decode(frames) -> int:
    """Frames decoded by a decoder that never seeks forward, given each distinct frame once in file
    order (what the pipeline asks for): every frame from 0 to the last selected one. This is what
    the probe shows DALI 2.4's CPU ``fn.decoders.video`` doing."""
    return int(np.max(frames)) + 1


def must_decode(frames, kf: Keyframes) -> int:
    """Frames a decoder has to decode to show ``frames``: |union over f of [keyframe(f), f]|."""
    count, done = 0, -1  # done: the last frame already counted
    for f in sorted(set(int(x) for x in frames)):
        start = max(kf.index[kf.before(f)], done + 1)
        if f >= start:
            count += f - start + 1
            done = f
    return count


# ---------------------------------------------------------------------------------------------
# the baseline: a PyAV Dataset in a DataLoader
# ---------------------------------------------------------------------------------------------


def seek_decode(path, wanted, kf: Keyframes):
    """Decode the sorted unique frame indices ``wanted`` of ``path``: {f: (H, W, 3) uint8 RGB},
    and the number of frames decoded.

    Keyframe seeking, as a careful user writes it: seek (to the keyframe at or before the next
    wanted frame) only when that keyframe lies beyond the decoder's position, i.e. when decoding
    forward would cost more than restarting from the keyframe. Frames in between are decoded but
    not converted to RGB."""
    out, decoded = {}, 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # one worker = one core, like one DALI thread
        frames, position = None, 0  # position: index of the next frame the decoder will return
        for f in wanted:
            k = kf.before(f)
            if frames is None or kf.index[k] > position:
                if kf.index[k] > position:  # (no seek at the very start, when f is in the first GOP)
                    container.seek(kf.pts[k], stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
            for frame in frames:
                i = frame_of(frame.pts, kf.first_pts, stream)
                decoded += 1
                position = i + 1
                if i == f:
                    out[f] = frame.to_ndarray(format="rgb24")
                    break
                if i > f:
                    raise RuntimeError(f"{path}: decoding for frame {f} got frame {i}: seeking went past it")
            else:
                raise RuntimeError(f"{path}: frame {f} not found (the video has {kf.num_frames} frames)")
    return out, decoded


# RGB <-> YIQ: hue is a rotation and saturation a scaling of the (I, Q) plane (as in DALI's color_twist)
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def _colour_matrix(saturation: float, hue_degrees: float) -> torch.Tensor:
    """3x3 RGB -> RGB matrix scaling saturation and rotating hue."""
    c, s = math.cos(math.radians(hue_degrees)), math.sin(math.radians(hue_degrees))
    iq = torch.tensor([[1.0, 0.0, 0.0], [0.0, saturation * c, -saturation * s], [0.0, saturation * s, saturation * c]])
    return _YIQ2RGB @ iq @ _RGB2YIQ


def augment_view(frames: np.ndarray, params: np.ndarray, view, data) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, S, S) float, the same operations as the DALI graph with the same
    parameters (``augment`` layout: crop box, flip, brightness, contrast, saturation, hue), all T
    frames alike; eval (``params`` None): resize the short side, centre crop."""
    size = view.crop_size
    h, w = frames.shape[1:3]
    if params is not None:  # random resized crop, flip, colour twist
        y0, x0, y1, x1 = (round(float(v)) for v in params[0:4] * np.array([h, w, h, w]))
        x = torch.from_numpy(frames[:, y0:y1, x0:x1]).permute(0, 3, 1, 2).float()  # (T, 3, h, w)
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if params[4]:
            x = x.flip(-1)
        brightness, contrast, saturation, hue = (float(v) for v in params[5:9])
        # always applied, identity or not, as DALI's graph always runs its color_twist op
        x = torch.einsum("ij,tjhw->tihw", _colour_matrix(saturation, hue), x)
        x = ((x * brightness - 128) * contrast + 128).clamp(0, 255)
    else:
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        s = data.short_side / min(h, w)
        x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True, align_corners=False)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[..., top:top + size, left:left + size]
    mean = torch.tensor(data.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(data.std).view(1, 3, 1, 1) * 255
    return ((x - mean) / std).permute(1, 0, 2, 3).contiguous()


class PyAVClips(torch.utils.data.Dataset):
    """Item (video index, epoch) -> the same dict of views as one sample of ``VideoLoader``."""

    def __init__(self, data, videos, keyframes):
        self.data, self.videos, self.keyframes = data, videos, keyframes
        # the same per-sample frame selection and augmentation parameters as the DALI pipeline
        # (the library's numpy code, the same seeds)
        self.selection = ClipSource(videos, list(data.views), data.train, data.seed, data.batch_size)
        self.splits = np.cumsum([0] + [v.frames for v in data.views])

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, item):
        index, epoch = item
        frames = self.selection.frames(index, epoch)
        video = self.videos[index]
        decoded, _ = seek_decode(video.path, np.unique(frames), self.keyframes[index])
        random_aug = self.data.train and self.data.augment
        params = self.selection.params(index, epoch) if random_aug else [None] * len(self.data.views)  # DALI's
        views = [augment_view(np.stack([decoded[f] for f in frames[a:b]]), p, view, self.data)
                 for view, p, a, b in zip(self.data.views, params, self.splits[:-1], self.splits[1:])]
        return {"views": views, "label": video.label, "index": index,
                "frames": [torch.from_numpy(frames[a:b]) for a, b in zip(self.splits[:-1], self.splits[1:])]}


class EndlessOrder(torch.utils.data.Sampler):
    """(video index, epoch) forever, epoch after epoch in ``ClipSource``'s order."""

    def __init__(self, selection: ClipSource):
        self.selection = selection

    def __iter__(self):
        epoch = 0
        while True:
            for index in self.selection.order(epoch):
                yield int(index), epoch
            epoch += 1


# ---------------------------------------------------------------------------------------------
# the loaders, as endless batch iterators
# ---------------------------------------------------------------------------------------------


def data_config(config: str, device: str, threads: int):
    """The DataConfig of the two-view setup, 'train' or 'eval'."""
    train = config == "train"
    return load_config(None, [
        "data.manifest=unused", f"data.device={device}", f"data.batch_size={BATCH_SIZE}",
        f"data.num_threads={threads}", f"data.train={train}", "data.augment=true", "data.short_side=128",
        "data.views.0.kind=segment", "data.views.0.frames=8", "data.views.0.crop_size=112",
        "data.views.1.kind=interval", "data.views.1.frames=8", "data.views.1.strides=[2,4]",
        "data.views.1.crop_size=112",
    ]).data


def dali_decode_only(data, videos, gpu):
    """Batches of the DALI pipeline cut after its decode step (the library's source, each distinct
    frame once in file order as the pipeline asks for them, no augmentation): how much of DALI's
    time is decoding."""
    from nvidia.dali import fn, pipeline_def, types

    clip_source = ClipSource(videos, list(data.views), data.train, data.seed, data.batch_size)

    def source(info):  # the library's source (reads and trims the file, selects the frames), less augmentation
        out = clip_source(info)
        return out[0], out[2], out[1], out[-1]  # encoded bytes, frames to decode, frames of the views, video index

    @pipeline_def(batch_size=data.batch_size, num_threads=data.num_threads, device_id=0 if gpu else None,
                  seed=data.seed, prefetch_queue_depth=2)
    def graph():
        encoded, distinct, frames, index = fn.external_source(
            source=source, num_outputs=4, batch=False, dtype=[types.UINT8, types.INT32, types.INT32, types.INT64])
        decoded = fn.decoders.video(encoded, frames=distinct, device="mixed" if gpu else "cpu")
        return decoded.shape(), frames, index  # a tiny output that still needs the decode

    pipe = graph()
    for _ in range(2):  # keep prefetch_queue_depth iterations in flight, as DALIGenericIterator does: the
        pipe.schedule_run()  # Python source then runs while the threads decode
    while True:
        decoded, frames, index = pipe.outputs()
        pipe.schedule_run()
        index = torch.from_numpy(index.as_array()).reshape(-1)
        yield {"views": [decoded], "frames": [torch.from_numpy(frames.as_array())], "label": index, "index": index}


class Loader:
    """An endless iterator of batches from one loader; ``close()`` frees its threads / workers."""

    def __init__(self, kind, data, videos, keyframes, threads, gpu):
        self.kind, self.gpu = kind, gpu
        if kind in ("dali", "dali-whole", "dali-cold"):
            data = copy.deepcopy(data)  # the caller's config serves every loader
            data.trim_gops = kind != "dali-whole"
            self.loader = VideoLoader(data, videos, shard_id=0, num_shards=1, device_id=0 if gpu else None)
            if kind == "dali-cold":  # forget every file's packet layout: demux on every visit
                self.loader.source.layouts.capacity = 0
            self.it = self._epochs()
        elif kind == "dali-decode":
            self.loader = None
            self.it = dali_decode_only(data, videos, gpu)
        else:
            dataset = PyAVClips(data, videos, keyframes)
            self.loader = torch.utils.data.DataLoader(
                dataset, batch_size=data.batch_size, sampler=EndlessOrder(dataset.selection),
                num_workers=threads, pin_memory=gpu, prefetch_factor=2)
            self.it = iter(self.loader)

    def _epochs(self):
        while True:
            yield from self.loader

    def __next__(self):
        batch = next(self.it)
        if self.gpu and self.kind == "pyav":  # the baseline's batches still have to reach the GPU
            batch["views"] = [v.cuda(non_blocking=True) for v in batch["views"]]
        return batch

    def close(self):
        if hasattr(self.it, "close"):
            self.it.close()  # a generator: frees its pipeline
        del self.it, self.loader
        gc.collect()


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------


class OtherLoad:
    """Share of the machine's CPU time that *other* processes used between start() and stop():
    the busy time of all CPUs (/proc/stat) less that of this process and its live descendants
    (DataLoader workers). On a shared machine this tells which numbers were disturbed."""

    TICK = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _busy():
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v) - v[3] - v[4]  # all but idle and iowait, in ticks

    @staticmethod
    def _ours():
        stats = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # gone meanwhile
                    continue
                stats[int(d.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime + stime
        tree, todo = set(), [os.getpid()]
        while todo:
            pid = todo.pop()
            tree.add(pid)
            todo += [c for c, (ppid, _) in stats.items() if ppid == pid and c not in tree]
        return sum(stats[p][1] for p in tree if p in stats)

    def start(self):
        self.t0, self.busy0, self.ours0 = time.perf_counter(), self._busy(), self._ours()

    def stop(self) -> float:
        ours = self._ours()  # before the processes go
        seconds = time.perf_counter() - self.t0
        others = (self._busy() - self.busy0) - (ours - self.ours0)
        return max(0.0, others / self.TICK / (seconds * os.cpu_count()))


def time_loader(loader: Loader, warmup: int, batches: int, keyframes, desc: str) -> dict:
    """Clips, frames and seconds over ``batches`` batches after ``warmup`` batches."""
    for _ in range(warmup):
        next(loader)
    selections = []  # (video index, all frame indices of the sample), counted after the clock stops
    load = OtherLoad()
    load.start()
    t0 = time.perf_counter()
    for _ in tqdm(range(batches), desc=desc, leave=False, disable=None):
        batch = next(loader)
        frames = torch.cat([f.cpu() for f in batch["frames"]], dim=1).numpy()  # (B, ΣT)
        selections += zip(batch["index"].tolist(), frames)
    if loader.gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    others = load.stop()
    return dict(clips=len(selections), selected=sum(f.size for _, f in selections), seconds=seconds, others=others,
                need=sum(must_decode(f, keyframes[i]) for i, f in selections),
                no_seek=sum(no_seek_decode(f) for _, f in selections))


def _decode_all(job):
    path, rgb = job
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_count = 1
        n = 0
        for frame in c.decode(stream):
            if rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def raw_decode(paths, threads: int, rgb: bool) -> dict:
    """Every frame of every file, decoded once by N single-threaded PyAV processes: frames/s."""
    with multiprocessing.get_context("fork").Pool(threads) as pool:
        pool.map(_decode_all, [(paths[0], rgb)] * threads)  # start the workers (and warm the cache)
        load = OtherLoad()
        load.start()
        t0 = time.perf_counter()
        frames = sum(pool.map(_decode_all, [(p, rgb) for p in paths], chunksize=1))
        seconds = time.perf_counter() - t0
        others = load.stop()
    return dict(frames=frames, seconds=seconds, fps=frames / seconds, others=others)


PROBE_CASES = ([0], [24], [25], [125], [249], [125, 125], [249, 5])


def probe_dali_decoder(path, threads: int, gpu: bool, reps=2) -> list[dict]:
    """ms per video (per thread) of one ``fn.decoders.video`` call for each list of frames in
    PROBE_CASES, with and without ``build_index``. A decoder that seeks to keyframes costs about the
    same for frames 0, 25 and 125 (keyframes) and one GOP more for 24 or 249; one that decodes from
    frame 0 grows with the position; [125, 125] tells what a repeated frame costs, [249, 5] whether
    the frames are decoded in the order given."""
    from nvidia.dali import fn, pipeline_def, types

    data = np.fromfile(path, dtype=np.uint8)
    rows = []
    for build_index in (True, False):
        for case in PROBE_CASES:
            wanted = np.array(case, np.int32)

            @pipeline_def(batch_size=BATCH_SIZE, num_threads=threads, device_id=0 if gpu else None, seed=0,
                          prefetch_queue_depth=1)
            def graph():
                encoded, frames = fn.external_source(source=lambda info: (data, wanted), num_outputs=2,
                                                     batch=False, dtype=[types.UINT8, types.INT32])
                return fn.decoders.video(encoded, frames=frames, device="mixed" if gpu else "cpu",
                                         build_index=build_index)

            pipe = graph()
            pipe.run()  # warm-up (and the pipeline's first-run allocations)
            t0 = time.perf_counter()
            for _ in range(reps):
                pipe.run()
            ms = 1e3 * (time.perf_counter() - t0) / (reps * BATCH_SIZE) * threads
            rows.append(dict(frames=case, build_index=build_index, ms_per_video=ms))
            del pipe
    return rows


def dali_decode_all(paths, threads: int, gpu: bool) -> dict:
    """Every frame of every file by ``fn.decoders.video`` (no frame selection, RGB output): DALI's
    own decode ceiling (NVDEC's with ``gpu``), frames/s."""
    from nvidia.dali import fn, pipeline_def, types

    batch = threads  # a few whole videos per batch: 250 RGB frames are 65 MB each
    files = [np.fromfile(p, dtype=np.uint8) for p in paths[: batch * (len(paths) // batch)]]

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=0 if gpu else None, seed=0, prefetch_queue_depth=1)
    def graph():
        encoded = fn.external_source(source=lambda info: files[info.idx_in_epoch % len(files)], batch=False,
                                     dtype=types.UINT8)
        return fn.decoders.video(encoded, device="mixed" if gpu else "cpu")

    pipe = graph()
    pipe.run()  # warm-up
    load = OtherLoad()
    load.start()
    t0 = time.perf_counter()
    frames = 0
    for _ in range(len(files) // batch):
        out = pipe.run()[0]
        frames += sum(out[i].shape()[0] for i in range(batch))
    seconds = time.perf_counter() - t0
    others = load.stop()
    del pipe
    return dict(frames=frames, seconds=seconds, fps=frames / seconds, others=others)


def run_rounds(args, videos, keyframes, paths) -> tuple[dict, dict]:
    """Alternate raw decode and every (loader, config) for ``args.rounds`` rounds."""
    gpu = args.device == "gpu"
    totals = {(l, c): [] for c in CONFIGS for l in loaders(gpu)}
    raw = {"pyav decode": [], "pyav decode+rgb": [], "dali decode+rgb": []}
    for r in range(args.rounds):
        for rgb in (False, True):
            raw["pyav decode+rgb" if rgb else "pyav decode"].append(raw_decode(paths, args.threads, rgb))
        raw["dali decode+rgb"].append(dali_decode_all(paths, args.threads, gpu))
        for config in CONFIGS:
            data = data_config(config, args.device, args.threads)
            for kind in loaders(gpu):
                loader = Loader(kind, data, videos, keyframes, args.threads, gpu)
                try:
                    m = time_loader(loader, args.warmup, args.batches, keyframes,
                                    desc=f"round {r + 1}/{args.rounds} {kind} {config}")
                finally:
                    loader.close()
                totals[(kind, config)].append(m)
                print(f"  round {r + 1}: {kind:11s} {config:5s} {m['clips'] / m['seconds']:6.2f} clips/s "
                      f"(other processes: {m['others']:.0%} of the CPUs)", flush=True)
    return totals, raw


DISTURBED = 0.10  # a timing window in which other processes took more than this share of the CPUs


def undisturbed(windows: list[dict]) -> list[dict]:
    """The windows that other processes left alone, or all of them when none was."""
    return [m for m in windows if m["others"] <= DISTURBED] or windows


def summarise(totals, raw, gpu) -> tuple[list[dict], dict, dict]:
    """Rows of the table; the raw decode rates (frames/s) pooled over rounds, and per round.
    Pooled numbers leave out the rounds that other processes disturbed (see ``DISTURBED``) when
    an undisturbed round exists; the per-round columns show every round."""
    rates = {k: sum(m["frames"] for m in undisturbed(v)) / sum(m["seconds"] for m in undisturbed(v))
             for k, v in raw.items()}
    rates_per_round = {k: [m["fps"] for m in v] for k, v in raw.items()}
    rows = []
    for (kind, config), all_rounds in totals.items():
        ms = undisturbed(all_rounds)
        # the decoder's ceiling: PyAV's (libavcodec on the CPU cores); NVDEC's for DALI on a GPU
        ceiling = rates["dali decode+rgb" if gpu and kind.startswith("dali") else "pyav decode"]
        clips, seconds = sum(m["clips"] for m in ms), sum(m["seconds"] for m in ms)
        need, no_seek, selected = (sum(m[k] for m in ms) for k in ("need", "no_seek", "selected"))
        rows.append(dict(
            loader=kind, config=config, clips_per_s=clips / seconds, frames_per_s=selected / seconds,
            must_decode_per_clip=need / clips, no_seek_decode_per_clip=no_seek / clips,
            must_decode_fps=need / seconds, decode_efficiency=need / seconds / ceiling,
            no_seek_efficiency=no_seek / seconds / ceiling,
            clips=clips, seconds=seconds, others=max(m["others"] for m in ms),
            rounds=f"{len(ms)}/{len(all_rounds)}",
            per_round=" ".join(f"{m['clips'] / m['seconds']:.2f} [{m['others']:.0%}]" for m in all_rounds)))
    return rows, rates, rates_per_round


# ---------------------------------------------------------------------------------------------
# one-off correctness checks: the baseline's seeking, GOP trimming
# ---------------------------------------------------------------------------------------------


def check_seek_decode(bench_video: Path, codec: str):
    """Assert that ``seek_decode`` returns exactly the wanted frames and decodes exactly
    ``must_decode`` frames: on a video whose frames show their index, and on a generated one."""
    sys.path.insert(0, str(REPO / "tests"))
    from videos import decode_all, make_video, read_frame_index

    encoder, suffix, _ = CODECS[codec]
    path = DATA_ROOT / f"index_check_{codec}.{suffix}"
    if not path.exists():
        tmp = path.with_name(path.stem + ".part" + path.suffix)
        make_video(tmp, 120, width=160, height=96, fps=FPS, codec=encoder, gop=GOP)
        tmp.rename(path)
    kf = keyframe_index(path)
    rng = np.random.default_rng(0)
    cases = [[0], [kf.num_frames - 1], [24, 25, 26], [3, 30, 31, 77, kf.num_frames - 2],
             *(np.unique(rng.integers(0, kf.num_frames, 12)).tolist() for _ in range(3))]
    for wanted in cases:
        got, decoded = seek_decode(path, wanted, kf)
        shown = [read_frame_index(got[f]) for f in wanted]
        assert shown == wanted, f"seek_decode of {wanted} returned frames showing {shown}"
        assert decoded == must_decode(wanted, kf), (wanted, decoded, must_decode(wanted, kf))
    # the same frames, pixel for pixel, as a plain decode of the whole (generated) video
    kf = keyframe_index(bench_video)
    reference = decode_all(bench_video)
    wanted = sorted({3, 30, 31, 100, 149, 150, NUM_FRAMES - 1})
    got, _ = seek_decode(bench_video, wanted, kf)
    assert all(np.array_equal(got[f], reference[f]) for f in wanted), "seek_decode differs from a full decode"


def check_trimming(videos, threads: int):
    """Assert that GOP trimming changes nothing but the speed: one eval batch (deterministic) of
    the pipeline with and without it, as uint8."""
    batches = []
    for trim in (False, True):
        data = data_config("eval", "cpu", threads)
        data.trim_gops = trim
        loader = VideoLoader(data, videos, shard_id=0, num_shards=1, uint8=True)
        batches.append(next(iter(loader)))
        del loader
    for a, b in zip(batches[0]["views"], batches[1]["views"]):
        assert torch.equal(a, b), "the trimmed video decodes to other pixels than the whole file"


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

COLUMNS = [  # field, header, format
    ("loader", "loader", "{}"), ("config", "config", "{}"), ("clips_per_s", "clips/s", "{:.2f}"),
    ("frames_per_s", "sel. frames/s", "{:.0f}"), ("must_decode_per_clip", "must decode/clip", "{:.1f}"),
    ("must_decode_fps", "must decode/s", "{:.0f}"), ("decode_efficiency", "decode eff.", "{:.2f}"),
    ("no_seek_decode_per_clip", "no-seek decode/clip", "{:.1f}"), ("no_seek_efficiency", "no-seek eff.", "{:.2f}"),
    ("clips", "clips", "{}"), ("seconds", "s", "{:.1f}"), ("others", "others' CPU", "{:.0%}"),
    ("rounds", "rounds used", "{}"),
    ("per_round", "clips/s per round [others' CPU]", "{}"),
]


def report(rows, rates, rates_per_round, probe, meta, summary, args):
    print()
    for k, v in meta.items():
        print(f"# {k}: {v}")
    print()
    print_table([h for _, h, _ in COLUMNS], [[fmt.format(r[f]) for f, _, fmt in COLUMNS] for r in rows])
    print(f"\nraw decode of every frame, {args.threads} threads: PyAV {rates['pyav decode']:.0f} frames/s "
          f"(per round: {' '.join(f'{x:.0f}' for x in rates_per_round['pyav decode'])}), "
          f"{rates['pyav decode+rgb']:.0f} with RGB conversion; DALI (RGB) {rates['dali decode+rgb']:.0f}")
    print(f"DALI / PyAV, train clips/s: {summary['dali_over_pyav']:.2f}x; decode efficiency "
          f"DALI {summary['decode_efficiency']:.2f}, PyAV {summary['pyav_decode_efficiency']:.2f}"
          + (f"; without GOP trimming (dali-whole): {summary['dali_whole_over_pyav']:.2f}x, efficiency "
             f"{summary['dali_whole_decode_efficiency']:.2f}; layouts demuxed on every visit (dali-cold): "
             f"{summary['dali_cold_over_pyav']:.2f}x, efficiency {summary['dali_cold_decode_efficiency']:.2f}"
             if "dali_cold_over_pyav" in summary else ""))
    print("\nfn.decoders.video alone, ms per video per thread:")
    print_table(["frames", "build_index=True", "build_index=False"],
                [[str(case), *(f"{p['ms_per_video']:.1f}" for p in probe if p["frames"] == case)]
                 for case in PROBE_CASES])

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"data_pipeline_{args.device}{'_quick' if args.quick else ''}"
    with open(f"{stem}.csv", "w", newline="") as f:
        for k, v in meta.items():
            f.write(f"# {k}: {v}\n")
        writer = csv.writer(f)
        fields = [c for c, _, _ in COLUMNS] + ["ms_per_video"]
        writer.writerow(fields)
        for r in rows:
            writer.writerow([f"{r[c]:.6g}" if isinstance(r[c], float) else r[c] for c in fields[:-1]] + [""])
        for name, fps in rates.items():  # the codec's ceiling, as rows of their own
            per_round = " ".join(f"{x:.0f}" for x in rates_per_round[name])
            writer.writerow([f"raw {name}", "all frames", "", f"{fps:.6g}"] + [""] * (len(fields) - 6)
                            + [per_round, ""])
        for p in probe:
            writer.writerow(["dali fn.decoders.video", f"frames={p['frames']} build_index={p['build_index']}"]
                            + [""] * (len(fields) - 3) + [f"{p['ms_per_video']:.4g}"])
    plot(rows, rates, meta, f"{stem}.png", args.device == "gpu")
    print(f"\nwrote {stem}.csv and {stem}.png")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.json}")


def plot(rows, rates, meta, path, gpu):
    """Left: clips/s per config and loader. Right: per loader, the selected frames it delivers, the
    frames it must decode (with its decode efficiency) and, as a marker, the frames from frame 0 to
    the last selected one, against the raw decode rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def row(kind, config):
        return next(r for r in rows if r["loader"] == kind and r["config"] == config)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    x = np.arange(len(CONFIGS))
    style = {"dali": dict(color="C2"), "pyav": dict(color="C0"),
             "dali-decode": dict(color="C2", alpha=0.4, hatch="//", label="dali, decode step only (diagnostic)"),
             "dali-whole": dict(color="C1", label="dali-whole: the whole file to DALI (no GOP trimming)"),
             "dali-cold": dict(color="C2", alpha=0.7, hatch="..", label="dali-cold: every file demuxed on every visit")}
    kinds = loaders(gpu)
    width = 0.8 / len(kinds)
    for j, kind in enumerate(kinds):
        kw = {"label": kind, **style[kind]}
        bars = ax1.bar(x + (j - (len(kinds) - 1) / 2) * width, [row(kind, c)["clips_per_s"] for c in CONFIGS],
                       width, **kw)
        ax1.bar_label(bars, fmt="%.1f", fontsize=8)
    shown = ("dali", "pyav") if gpu else ("dali", "dali-whole", "pyav")
    width = 0.8 / len(shown)
    for j, kind in enumerate(shown):
        r, xs = [row(kind, c) for c in CONFIGS], x + (j - (len(shown) - 1) / 2) * width
        color = style[kind]["color"]
        ax2.bar(xs, [q["must_decode_fps"] for q in r], width, color=color, alpha=0.35,
                label=f"{kind}: frames it must decode")
        ax2.bar(xs, [q["frames_per_s"] for q in r], width, color=color, label=f"{kind}: selected frames delivered")
        if kind == "dali-whole" and not gpu:  # what DALI's CPU decoder really decodes (see the probe)
            ax2.plot(xs, [q["no_seek_decode_per_clip"] * q["clips_per_s"] for q in r], "v", color=color, ms=9,
                     markeredgecolor="k", label="dali-whole: frames it decodes (no-seek model)")
        for xi, q in zip(xs, r):
            ax2.annotate(f"eff {q['decode_efficiency']:.2f}", (xi, q["must_decode_fps"]), ha="center",
                         va="bottom", fontsize=8)
    for (name, fps), (color, ls) in zip(rates.items(), [("0.2", "--"), ("0.5", ":"), ("C2", "-.")]):
        ax2.axhline(fps, color=color, ls=ls, label=f"raw {name}, every frame ({fps:.0f}/s)")
    ax1.set(title=f"clips/s (2 views x 8 frames, batch {BATCH_SIZE})", ylabel="clips/s",
            ylim=(0, 1.5 * max(r["clips_per_s"] for r in rows)))
    ax2.set(title="frames/s", ylabel="frames/s", ylim=(0, 1.45 * max(rates.values())))
    for ax in (ax1, ax2):
        ax.set_xticks(x, CONFIGS)
        ax.grid(True, axis="y", alpha=0.3)
    ax1.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=7, loc="upper left", ncol=2)
    info = "data pipeline | " + " | ".join(f"{k}: {v}" for k, v in meta.items())
    fig.suptitle("\n".join(textwrap.wrap(info, width=int(17 * fig.get_figwidth()))), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# metadata and main
# ---------------------------------------------------------------------------------------------


def metadata(args, paths, keyframes) -> dict:
    import nvidia.dali

    device = device_name(args.device == "gpu")
    rev = git_rev()
    sizes = [p.stat().st_size for p in paths]
    gops = sorted({b - a for kf in keyframes for a, b in zip(kf.index, kf.index[1:])})
    kbits = 8 * sum(sizes) / len(sizes) / (NUM_FRAMES / FPS) / 1e3
    return {
        "device": device,
        "threads": args.threads,
        "videos": f"{len(paths)} x {NUM_FRAMES} frames {WIDTH}x{HEIGHT} {FPS} fps {args.codec}, keyframe every "
                  f"{'/'.join(map(str, gops))} frames, {kbits:.0f} kbit/s",
        "timing": f"{args.rounds} rounds x {args.batches} batches of {BATCH_SIZE} after {args.warmup} warm-up batches",
        "torch": torch.__version__,
        "DALI": nvidia.dali.__version__,
        "PyAV": f"{av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})",
        "git": rev,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load avg (1 min) at start": f"{os.getloadavg()[0]:.2f}",
        "command": "python " + shlex.join(sys.argv),
    }


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: DALI's CPU decoder on VP9; gpu: NVDEC ('mixed') + GPU augmentation on H.264")
    p.add_argument("--quick", action="store_true", help="16 videos, 2 rounds of 6 batches (< 3 min on 2 cores)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="DALI num_threads = DataLoader num_workers = raw decode processes (default: the cores)")
    p.add_argument("--videos", type=int, help="number of videos (default 32, --quick 16)")
    p.add_argument("--rounds", type=int, help="alternating rounds over all loaders (default 3, --quick 2)")
    p.add_argument("--batches", type=int, help="timed batches per loader and round (default 20, --quick 6)")
    p.add_argument("--warmup", type=int, help="untimed batches first (default: --threads)")
    p.add_argument("--json", help="write a summary here")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    args = p.parse_args()
    n, rounds, batches = SIZES[args.quick]
    args.videos, args.rounds, args.batches = args.videos or n, args.rounds or rounds, args.batches or batches
    args.warmup = args.warmup if args.warmup is not None else args.threads
    args.codec = "h264" if args.device == "gpu" else "vp9"
    if args.device == "gpu" and not torch.cuda.is_available():
        p.error("--device gpu but torch.cuda.is_available() is False")
    return args


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="nvidia.dali")  # deprecation notes on every pipeline build
    t_start = time.perf_counter()

    paths = ensure_videos(args.videos, "vp9", args.threads)
    if args.codec != "vp9":
        paths = ensure_videos(args.videos, args.codec, args.threads)
    keyframes = [keyframe_index(p) for p in paths]
    for p, kf in zip(paths, keyframes):  # the efficiency model assumes this structure
        assert kf.num_frames == NUM_FRAMES and kf.index == list(range(0, NUM_FRAMES, GOP)), (p, kf.index)
    check_seek_decode(paths[0], args.codec)
    videos = [Video(str(p), label=i % 10, num_frames=kf.num_frames, width=WIDTH, height=HEIGHT, codec=args.codec)
              for i, (p, kf) in enumerate(zip(paths, keyframes))]
    if args.device == "cpu":
        check_trimming(videos, args.threads)
    meta = metadata(args, paths, keyframes)
    print(f"data pipeline benchmark on {meta['device']}: {meta['videos']}; {args.threads} threads; "
          f"setup {time.perf_counter() - t_start:.0f} s", flush=True)

    probe = probe_dali_decoder(paths[0], args.threads, args.device == "gpu")
    totals, raw = run_rounds(args, videos, keyframes, paths)
    rows, rates, rates_per_round = summarise(totals, raw, args.device == "gpu")

    meta["load avg (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
    meta["wall time"] = f"{time.perf_counter() - t_start:.0f} s"
    meta["command"] = meta.pop("command")  # keep the command last
    by = {(r["loader"], r["config"]): r for r in rows}
    summary = {
        "dali_over_pyav": by[("dali", "train")]["clips_per_s"] / by[("pyav", "train")]["clips_per_s"],
        "decode_efficiency": by[("dali", "train")]["decode_efficiency"],
        "pyav_decode_efficiency": by[("pyav", "train")]["decode_efficiency"],
        "dali_over_pyav_eval": by[("dali", "eval")]["clips_per_s"] / by[("pyav", "eval")]["clips_per_s"],
        "dali_decode_step_share": by[("dali", "train")]["clips_per_s"] / by[("dali-decode", "train")]["clips_per_s"],
    }
    if args.device == "cpu":
        summary.update({
            "dali_whole_over_pyav": by[("dali-whole", "train")]["clips_per_s"] / by[("pyav", "train")]["clips_per_s"],
            "dali_whole_decode_efficiency": by[("dali-whole", "train")]["decode_efficiency"],
            "dali_cold_over_pyav": by[("dali-cold", "train")]["clips_per_s"] / by[("pyav", "train")]["clips_per_s"],
            "dali_cold_decode_efficiency": by[("dali-cold", "train")]["decode_efficiency"],
        })
    summary.update({
        "raw_decode_fps": rates["pyav decode"],
        "raw_decode_rgb_fps": rates["pyav decode+rgb"],
        "dali_decode_all_fps": rates["dali decode+rgb"],
        "rows": rows,
        "raw_decode_fps_per_round": rates_per_round,
        "max_other_processes_cpu_share": max(r["others"] for r in rows),
        "dali_decoder_probe": probe,
        "meta": meta,
    })
    report(rows, rates, rates_per_round, probe, meta, summary, args)


if __name__ == "__main__":
    main()
