"""The set-up path for a real dataset (docs/datasets.md), end to end on a tiny UCF101-like download:
``prepare`` (XviD-like MPEG-4 .avi with audio -> VP9 .webm) -> ``index --layout ucf101`` ->
the DALI pipeline. Expectations (labels, frame counts, which videos) are written out here."""
from fractions import Fraction

import av
import numpy as np
import pytest

from timeclr import data
from timeclr.config import load_config
from timeclr.pipelines.loader.clip_source import read_videos
from timeclr.pipelines.storage.manifest import read_manifest
from timeclr.pipelines.loader.video import VideoLoader
from tests.helpers.videos import frame_index_image, read_frame_index

CLASSES = ["ApplyEyeMakeup", "Biking", "HandstandPushups"]  # classInd order = label order
TRAIN = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", "Biking/v_Biking_g08_c01", "HandstandPushups/v_HandStandPushups_g08_c01"]
TEST = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", "Biking/v_Biking_g01_c01"]


def write_avi(path, num_frames, fps=25):
    """MPEG-4 Part 2 in AVI with an audio stream, as UCF101 ships; 80x80 frames show their index
    in 8-pixel stripes, 4 pixels after ``prepare --short-side 40``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = 80, 80, "yuv420p"
        audio = out.add_stream("mp2", rate=22050)
        for i in range(num_frames):
            for packet in video.encode(av.VideoFrame.from_ndarray(frame_index_image(i, 80, 80), format="rgb24")):
                out.mux(packet)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
        samples.sample_rate = 22050
        for packet in audio.encode(samples):
            out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                out.mux(packet)


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    """ROOT/raw/UCF-101/<class>/*.avi and ROOT/annotations/ucfTrainTestlist, CRLF as shipped."""
    root = tmp_path_factory.mktemp("ucf101")
    for k, key in enumerate(TRAIN + TEST):
        write_avi(root / "raw" / "UCF-101" / f"{key}.avi", 30 + 5 * k)
    lists = root / "annotations" / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_bytes("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(CLASSES)).encode())
    (lists / "trainlist01.txt").write_bytes("".join(
        f"{key}.avi {CLASSES.index(key.split('/')[0]) + 1}\r\n" for key in TRAIN).encode())
    (lists / "testlist01.txt").write_bytes("".join(f"{key}.avi\r\n" for key in TEST).encode())
    return root


def test_prepare_index_and_load_a_ucf101_like_download(download, capsys):
    root = download
    argv = ["prepare", str(root / "raw"), str(root / "prepared"), "--codec", "vp9", "--short-side", "40",
            "--workers", "1"]
    assert data.main(argv) == 0
    assert data.main(argv) == 0  # a rerun finds everything done
    assert "0 prepared, 5 skipped" in capsys.readouterr().out

    manifests = {}
    for subset, keys in (("train", TRAIN), ("test", TEST)):
        out = root / "manifests" / f"{subset}1.csv"
        assert data.main(["index", str(root / "prepared"), "--layout", "ucf101", "--annotations",
                          str(root / "annotations"), "--split", "1", "--subset", subset, "--device", "cpu",
                          "--workers", "1", "-o", str(out)]) == 0
        rows, classes = read_manifest(out)
        assert classes == CLASSES
        got = {r["path"].rsplit(".", 1)[0]: (r["label"], r["codec"], r["num_frames"]) for r in rows}
        want = {f"UCF-101/{key}": (CLASSES.index(key.split("/")[0]), "vp9", 30 + 5 * (TRAIN + TEST).index(key))
                for key in keys}
        assert got == want, f"{subset}: manifest {got} != expected {want}"
        manifests[subset] = out

    cfg = load_config("pipelines/debug.yaml", [f"data.manifest={manifests['train']}", "data.augment=false",
                                               "data.train=false", "data.batch_size=3", "data.short_side=40",
                                               "data.views.0.crop_size=40", "data.views.1.crop_size=40"])
    videos = read_videos(manifests["train"])
    batch = next(iter(VideoLoader(cfg.data, videos, uint8=True)))
    for b, index in enumerate(batch["index"].tolist()):
        assert batch["label"][b] == videos[index].label
        for view, frames in zip(batch["views"], batch["frame_indices"]):
            shown = [read_frame_index(view[b, t].numpy()) for t in range(view.shape[1])]
            assert shown == frames[b].tolist(), f"video {index}: frames show {shown}, selected {frames[b].tolist()}"
