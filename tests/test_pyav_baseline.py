"""The data pipeline benchmark's PyAV baseline (benchmarks/pyav_baseline.py) and its keyframe model
(benchmarks/bench_videos.py): the benchmark's numbers compare DALI with this loader and rest on
that model, so both are checked here rather than on every benchmark run.

References: the frame indices the test videos draw on themselves, PyAV's plain decode of every
frame, and the library's own frame selection (``ClipSource``).
"""
import itertools

import numpy as np
import pytest
import torch

from tests.helpers.videos import decode_all, make_video, read_frame_index
from timeclr.pipelines.loader.clip_source import Video

from timeclr.benchmarks import bench_videos, pyav_baseline
from timeclr.benchmarks.bench_videos import GOP, keyframe_index, must_decode
from timeclr.benchmarks.pipeline_timing import data_config

N = 120


@pytest.fixture(scope="module", params=["libvpx-vp9", "libx264"])
def index_video(request, tmp_path_factory):
    """A video whose frames show their index, in the benchmark's codecs and GOP (VP9 on CPU,
    H.264 for NVDEC)."""
    suffix = "webm" if request.param == "libvpx-vp9" else "mp4"
    path = tmp_path_factory.mktemp("index") / f"index.{suffix}"
    return make_video(path, N, width=160, height=96, fps=bench_videos.FPS, codec=request.param, gop=GOP)


def _cases(num_frames):
    rng = np.random.default_rng(0)
    return [[0], [num_frames - 1], [24, 25, 26], [3, 30, 31, 77, num_frames - 2],
            *(np.unique(rng.integers(0, num_frames, 12)).tolist() for _ in range(3))]


def test_seek_decode_returns_the_wanted_frames_decoding_only_what_it_must(index_video):
    kf = keyframe_index(index_video)
    assert kf.num_frames == N and kf.index[0] == 0
    for wanted in _cases(kf.num_frames):
        got, decoded = pyav_baseline.seek_decode(index_video, wanted, kf)
        shown = [read_frame_index(got[f]) for f in wanted]
        assert shown == wanted, f"seek_decode of {wanted} returned frames showing {shown}"
        assert decoded == must_decode(wanted, kf), (wanted, decoded, must_decode(wanted, kf))


def test_must_decode_counts_from_each_keyframe():
    kf = bench_videos.Keyframes(index=[0, 25, 50], pts=[0, 25, 50], num_frames=75, first_pts=0)
    assert must_decode([0], kf) == 1
    assert must_decode([24], kf) == 25
    assert must_decode([25], kf) == 1
    assert must_decode([3, 10], kf) == 11  # one run from the keyframe, not two
    assert must_decode([10, 30], kf) == 11 + 6
    assert bench_videos.no_seek_decode([10, 30]) == 31


@pytest.fixture(scope="module")
def bench_video(tmp_path_factory):
    """The first 100 frames of the benchmark's first video, encoded as the benchmark does."""
    path = tmp_path_factory.mktemp("bench") / "clip.webm"
    bench_videos.encode(path, itertools.islice(bench_videos.synthetic_frames(0), 100), "vp9")
    return path


def test_seek_decode_gives_the_pixels_of_a_full_decode(bench_video):
    kf = keyframe_index(bench_video)
    assert kf.index == list(range(0, 100, GOP)), "the benchmark's encoder settings lost the fixed GOP"
    reference = decode_all(bench_video)
    wanted = [3, 30, 31, 49, 50, 51, 99]
    got, _ = pyav_baseline.seek_decode(bench_video, wanted, kf)
    for f in wanted:
        assert np.array_equal(got[f], reference[f]), f"seek_decode's frame {f} differs from a full decode"


@pytest.mark.parametrize("config", ["train", "eval"])
def test_dataset_item_is_the_library_selection_augmented(bench_video, config):
    """An item of the baseline's Dataset: the library's frames for that (video, epoch), and views
    made from a full decode's frames with the same parameters."""
    data = data_config(config, "cpu", threads=1)
    videos = [Video(str(bench_video), label=3, num_frames=100, width=bench_videos.WIDTH,
                    height=bench_videos.HEIGHT, codec="vp9")]
    dataset = pyav_baseline.PyAVClips(data, videos, [keyframe_index(bench_video)])
    item = dataset[0, 1]
    frames = dataset.selection.frames(0, 1)
    splits = dataset.splits
    assert item["label"] == 3 and item["index"] == 0
    assert torch.equal(torch.cat(item["frame_indices"]), torch.from_numpy(frames))
    reference = decode_all(bench_video)
    params = dataset.selection.params(0, 1) if config == "train" else [None] * len(data.views)
    for v, (view, p) in enumerate(zip(data.views, params)):
        want = pyav_baseline.augment_view(reference[frames[splits[v]:splits[v + 1]]], p, view, data)
        assert item["views"][v].shape == (3, view.frames, view.crop_size, view.crop_size)
        assert torch.equal(item["views"][v], want), f"view {v} differs from the full decode's frames"
