"""The data pipeline benchmark's videos: a Kinetics-like set generated once, and where its
keyframes are.

10 s clips at 25 fps (250 frames), 340x256, a panning textured background with a few moving
ellipses and per-frame sensor noise (so it compresses like footage, not like flat colour: ~1.1
Mbit/s), random but deterministic per video. VP9 (.webm, libvpx realtime, crf 32) with a keyframe
every 25 frames; H.264 copies (.mp4, libx264, GOP 25, no B-frames) for NVDEC. Cached in
``data/bench_videos/`` (git-ignored); each file is written whole or not at all
(``timeclr.pipelines.storage.encode.write_video``), so an interrupted run never leaves a truncated video
in the cache. ``benchmarks/prepare_speed.py`` times ``prepare`` on the same set.

The keyframe model (``keyframe_index``, ``must_decode``, ``no_seek_decode``) says how many frames a
decoder has to decode for a clip: the benchmark's efficiency numbers rest on it, and
``tests/test_pyav_baseline.py`` checks it against what PyAV really decodes.
"""
import bisect
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from timeclr.benchmarks.harness import REPO
from timeclr.pipelines.storage.encode import write_video

DATA_ROOT = REPO / "data" / "bench_videos"

# the generated set: what Kinetics looks like after the usual "short side 256" resize
FPS, NUM_FRAMES, WIDTH, HEIGHT, GOP = 25, 250, 340, 256, 25
CODECS = {  # name -> (encoder, suffix, crf, encoder options beyond write_video's)
    "vp9": ("libvpx-vp9", "webm", 32, {"g": str(GOP)}),
    # no scene-cut keyframes: every GOP is GOP frames long, as the efficiency model assumes
    "h264": ("libx264", "mp4", 23, {"preset": "veryfast", "g": str(GOP), "keyint_min": str(GOP),
                                    "sc_threshold": "0"}),
}
GENERATOR_VERSION = 1  # bump when the content or the encoding changes: cached videos are regenerated


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
    """Write RGB frames to ``path`` in ``codec`` ('vp9' or 'h264') with a keyframe every GOP frames."""
    encoder, _, crf, options = CODECS[codec]
    write_video(path, frames, codec=encoder, fps=FPS, gop=GOP, crf=crf, options=options)


def _generate(job):
    """Worker: render and write video ``seed``. job = (seed, path, codec)."""
    seed, path, codec = job
    encode(Path(path), synthetic_frames(seed), codec)


def video_path(codec: str, i: int) -> Path:
    """Where video ``i`` of the set in ``codec`` is cached (the generator version in the folder name)."""
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
