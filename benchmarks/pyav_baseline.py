"""The data pipeline benchmark's baseline: the PyTorch DataLoader a user would write with PyAV.

A ``torch.utils.data.DataLoader`` over ``PyAVClips``, whose ``__getitem__`` takes the same frames
and augmentation parameters as TimeCLR's DALI pipeline (the library's ``ClipSource.frames`` /
``.params``: same numpy code, same seeds), opens the file with PyAV and decodes the sorted union
of the frames with keyframe seeking (``seek_decode``): it seeks to the keyframe at or before the
next wanted frame only when that keyframe lies beyond the decoder's position, so it decodes
exactly the frames in [keyframe(f), f] for the wanted f, each once. It converts the wanted frames
to RGB and applies the same operations as the DALI graph with torch (``augment_view``: crop +
resize with antialiasing, flip, brightness / contrast / saturation / hue), or the eval resize +
centre crop.

``PillowClips`` is the same loader for frame archives: each view frame's JPEG read and decoded
by Pillow.

``tests/test_pyav_baseline.py`` checks that ``seek_decode`` returns exactly the wanted frames,
decodes exactly ``bench_videos.must_decode`` of them, and matches a plain decode of every frame.
"""
import math
import os

import av
import numpy as np
import torch
import torch.nn.functional as F

from timeclr.benchmarks.bench_videos import Keyframes, frame_of
from timeclr.pipelines.storage import frame_archive
from timeclr.pipelines.loader.clip_source import ClipSource


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
        decoded = self.decode(index, frames)  # (ΣT, H, W, 3): every view's frames, in order
        random_aug = self.data.train and self.data.augment
        params = self.selection.params(index, epoch) if random_aug else [None] * len(self.data.views)  # DALI's
        views = [augment_view(decoded[a:b], p, view, self.data)
                 for view, p, a, b in zip(self.data.views, params, self.splits[:-1], self.splits[1:])]
        return {"views": views, "label": video.label, "index": index,
                "frame_indices": [torch.from_numpy(frames[a:b]) for a, b in zip(self.splits[:-1], self.splits[1:])]}

    def decode(self, index, frames) -> np.ndarray:
        """``frames`` of video ``index`` as (len(frames), H, W, 3) uint8: each distinct frame
        decoded once with keyframe seeking."""
        decoded, _ = seek_decode(self.videos[index].path, np.unique(frames), self.keyframes[index])
        return np.stack([decoded[f] for f in frames])


class PillowClips(PyAVClips):
    """The loader a user writes for frames stored as JPEG files: the same item as ``PyAVClips``
    from a frame archive (``timeclr.pipelines.storage.frame_archive``), each view frame's JPEG read with
    one ``pread`` and decoded by Pillow (libjpeg-turbo), then the same torch augmentation."""

    def __init__(self, data, videos, keyframes=None):
        super().__init__(data, videos, keyframes)
        self.indexes = frame_archive.IndexCache()

    def decode(self, index, frames) -> np.ndarray:
        path = self.videos[index].path
        jpegs = frame_archive.read_frames(path, frames, self.indexes(path, os.path.getsize(path)))
        return np.stack([frame_archive.decode_jpeg(j) for j in jpegs])


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
