"""GOP trimming (pipelines/storage/gop.py): the short IVF stream shows the same frames as the whole file.

References: PyAV's decode of the whole file (an independent decoder), the frame indices the test
videos draw on themselves, and the closed-form packet count Σ over GOPs of (last wanted − key + 1).
"""
import numpy as np
import pytest
import torch

from timeclr.config import load_config
from timeclr.pipelines.loader.clip_source import Video
from timeclr.pipelines.storage.gop import trim_to_gops
from timeclr.pipelines.loader.video import VideoLoader
from tests.helpers.videos import decode_all, make_video, read_frame_index

N, GOP = 70, 12


@pytest.fixture(scope="module", params=["libvpx-vp9", "libvpx"])
def video(request, tmp_path_factory):
    """(path, bytes, PyAV's decode of every frame) of an index video, VP9 or VP8."""
    path = make_video(tmp_path_factory.mktemp("gop") / "v.webm", N, gop=GOP, codec=request.param)
    return path, np.fromfile(path, np.uint8), decode_all(path)


def _decode_bytes(data: np.ndarray, tmp_path) -> np.ndarray:
    ivf_path = tmp_path / "trimmed.ivf"
    data.tofile(ivf_path)
    return decode_all(str(ivf_path))


@pytest.mark.parametrize("wanted", [[0], [N - 1], [5, 6, 30], [11, 12, 13], list(range(0, N, 9)), [3, 40, 41, 69]])
def test_trimmed_stream_decodes_to_the_same_frames(video, wanted, tmp_path):
    path, data, whole = video
    wanted = np.array(wanted)
    trimmed = trim_to_gops(data, wanted, N)
    assert trimmed is not None, f"{path}: a VP8/VP9 video was not trimmed"
    new_data, positions = trimmed
    frames = _decode_bytes(new_data, tmp_path)
    keys = np.arange(0, N, GOP)  # the encoder's fixed keyframe interval
    gops = {}
    for f in wanted:
        key = keys[keys <= f].max()
        gops[key] = max(gops.get(key, key), f)
    want_packets = sum(last - key + 1 for key, last in gops.items())
    assert len(frames) == want_packets, f"trimmed stream holds {len(frames)} frames, expected {want_packets}"
    for f, p in zip(wanted, positions):
        assert read_frame_index(frames[p]) == f, f"position {p} shows frame {read_frame_index(frames[p])}, not {f}"
        assert np.array_equal(frames[p], whole[f]), (
            f"frame {f}: trimmed decode differs from the whole file's by {np.abs(frames[p].astype(int) - whole[f]).max()}")


def test_untrimmable_videos_are_left_whole(video, tmp_path):
    path, data, _ = video
    assert trim_to_gops(data, np.array([3]), N + 1) is None, "a packet/frame count mismatch must not be trimmed"
    assert trim_to_gops(np.frombuffer(b"not a video at all", np.uint8), np.array([0]), N) is None
    h264 = make_video(tmp_path / "v.mp4", 20, codec="libx264")
    assert trim_to_gops(np.fromfile(h264, np.uint8), np.array([3]), 20) is None, "H.264 is not trimmed"


def test_pipeline_batches_identical_with_and_without_trimming(tmp_path):
    """Train mode with augmentation, uint8: trimming may change the speed, never a pixel."""
    videos = [Video(make_video(tmp_path / f"v{i}.webm", n, gop=GOP), i % 2, n) for i, n in enumerate([30, 61, 45, 90])]
    batches = {}
    for trim in (False, True):
        data = load_config("pipelines/debug.yaml", ["data.manifest=unused", f"data.trim_gops={trim}"]).data
        batches[trim] = list(iter(VideoLoader(data, videos, uint8=True)))
    for a, b in zip(batches[False], batches[True], strict=True):
        assert torch.equal(a["index"], b["index"])
        for v, (x, y) in enumerate(zip(a["views"], b["views"])):
            assert torch.equal(x, y), f"view {v}: max |diff| {(x.int() - y.int()).abs().max()} with trimming"


def test_packet_index_cache_remembers_files_and_notices_a_changed_size(video):
    from timeclr.pipelines.storage.gop import PacketIndexCache

    path, data, _ = video
    cache = PacketIndexCache(capacity=2)
    first = cache(path, data)
    assert first is not None and len(first.sizes) == N
    assert cache(path, data) is first, "a second visit demuxed the file again"
    assert cache(path, data[:-100]) is not first, "a file that changed size reused the old packet index"
    cache("b", data), cache("c", data)
    assert (path, data.size) not in cache._items, "the least recently used file was not evicted"
