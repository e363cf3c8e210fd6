"""Frame archives (one JPEG per frame in a tar): the format, prepare --codec jpeg, the indexer, and
damaged archives in the pipeline.

References: Python's ``tarfile`` (the format is plain tar), PyAV's MJPEG decoder (independent of
the Pillow that writes the JPEGs) and the frames' own index stripes.
"""
import csv
import os
import tarfile

import numpy as np
import pytest

from timeclr.config import load_config
from timeclr.errors import VideoError
from timeclr.pipelines.storage import frame_archive
from timeclr.pipelines.loader.clip_source import Video
from timeclr.pipelines.loader.video import VideoLoader
from tests.helpers.videos import decode_all, make_archive, make_video, read_frame_index

W, H = 80, 80


def test_an_archive_is_a_plain_tar_whose_byte_ranges_are_the_frames(tmp_path):
    path = make_archive(tmp_path / "v.tar", 12, W, H, fps=30)
    with tarfile.open(path) as tar:  # the standard tool reads it
        names = tar.getnames()
        assert names == [f"{k:06d}.jpg" for k in range(12)] + ["info.json"], names
        first = tar.extractfile("000005.jpg").read()
    index = frame_archive.read_index(path)
    assert index.info["num_frames"] == 12 and index.info["fps"] == "30"
    got = frame_archive.read_frames(path, [5, 0, 5], index)
    assert got[0].tobytes() == first and got[2].tobytes() == first
    shown = [read_frame_index(frame_archive.decode_jpeg(j)) for j in got]
    assert shown == [5, 0, 5], shown


def test_probe_measures_an_archive_and_names_what_is_wrong(tmp_path):
    from timeclr.pipelines.ingest.probe import probe_video

    path = make_archive(tmp_path / "v.tar", 10, W, H, fps=25)
    info = probe_video(path, "cpu")
    assert (info["num_frames"], info["width"], info["height"], info["codec"]) == (10, W, H, "jpeg")
    assert info["duration"] == pytest.approx(0.4) and info["bytes"] == os.path.getsize(path)

    cut = tmp_path / "cut.tar"
    cut.write_bytes(open(path, "rb").read()[: os.path.getsize(path) // 2])
    with pytest.raises(VideoError, match="not a frame archive|truncated"):
        probe_video(cut)
    junk = tmp_path / "junk.tar"
    data = bytearray(open(path, "rb").read())
    index = frame_archive.read_index(path)
    start = int(index.offsets[3])
    data[start:start + int(index.sizes[3])] = bytes(int(index.sizes[3]))  # frame 3's JPEG zeroed
    junk.write_bytes(bytes(data))
    with pytest.raises(VideoError, match="unreadable: frame 3"):
        probe_video(junk)
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(path, arcname="something.bin")
    with pytest.raises(VideoError, match="holds no info.json"):
        probe_video(plain)


def test_prepare_jpeg_then_index_gives_the_source_frames(tmp_path):
    """A VP9 source tree -> prepare --codec jpeg -> index: the manifest says codec jpeg, and every
    frame of each archive is the source's frame (PyAV decode of both, JPEG tolerance)."""
    from timeclr.pipelines.ingest.index import index_tree
    from timeclr.pipelines.ingest.prepare import prepare_tree

    src, dst = tmp_path / "src", tmp_path / "dst"
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        make_video(src / c / f"{c}.webm", 20, W, H, gop=4)
    prepare_tree(src, dst, codec="jpeg", workers=1, crf=90)
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.tar")) == ["a/a.tar", "b/b.tar"]
    manifest = tmp_path / "m.csv"
    index_tree(dst, manifest, device="cpu", workers=1)
    rows = list(csv.DictReader(open(manifest)))
    assert [(r["path"], r["codec"], r["num_frames"]) for r in rows] == [("a/a.tar", "jpeg", "20"),
                                                                         ("b/b.tar", "jpeg", "20")], rows
    for c in ("a", "b"):
        want, got = decode_all(src / c / f"{c}.webm"), decode_all(dst / c / f"{c}.tar")
        diff = np.abs(want.astype(int) - got.astype(int))
        assert got.shape == want.shape and diff.mean() < 2.0, (c, got.shape, diff.mean())
        assert [read_frame_index(f) for f in got] == list(range(20))


def test_a_manifest_mixing_archives_and_videos_is_refused(tmp_path):
    a = Video(make_archive(tmp_path / "a.tar", 10, W, H), 0, 10, codec="jpeg")
    b = Video(make_video(tmp_path / "b.webm", 10, W, H), 0, 10, codec="vp9")
    data = load_config("pipelines/debug.yaml", ["data.manifest=unused"]).data
    with pytest.raises(ValueError, match="mixes frame archives .*a.tar.* and video files .*b.webm"):
        VideoLoader(data, [a, b])


def test_archives_damaged_after_indexing_are_logged_and_skipped(tmp_path):
    """One archive cut short (its size changed) and one whose JPEGs are overwritten with junk of
    the same size (DALI's image decoder fails; Pillow names the frame): both are named and
    skipped, every other archive is still read."""
    vids = [Video(make_archive(tmp_path / f"v{i}.tar", 30, W, H), i % 2, 30, codec="jpeg") for i in range(14)]
    for v in vids:
        v.bytes = os.path.getsize(v.path)
    data = load_config("pipelines/debug.yaml", ["data.manifest=unused", "data.batch_size=2",
                                                "data.train=false"]).data
    loader = VideoLoader(data, vids)
    it = iter(loader)
    seen = next(it)["index"].tolist()
    cut, junk = vids[10].path, vids[12].path  # beyond what DALI has prefetched
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) // 3)
    index = frame_archive.read_index(junk)
    with open(junk, "r+b") as f:
        for offset, size in zip(index.offsets.tolist(), index.sizes.tolist()):
            f.seek(offset)
            f.write(np.random.default_rng(offset).integers(0, 256, size, dtype=np.uint8).tobytes())
    with pytest.warns(UserWarning, match="skipping damaged video"):
        for batch in it:
            seen += batch["index"].tolist()
    skipped = dict(loader.skipped)
    assert set(skipped) == {cut, junk}, loader.skipped
    assert "size changed" in skipped[cut]
    assert "frame" in skipped[junk] or "decode" in skipped[junk], skipped[junk]
    assert set(seen) == set(range(14)) - {10, 12}, seen
