"""WebDataset shards written from a manifest (``timeclr.data shard``).

References: Python's ``tarfile`` and the ``webdataset`` library (the format's own reader, when
installed) read the shards back; the files' own bytes and ``gop.layout`` / ``frame_archive``'s
member table are what each sample must carry.
"""
import csv
import json
import os
import tarfile

import numpy as np
import pytest

from timeclr.pipelines import frame_archive, gop
from timeclr.pipelines.index import index_tree
from timeclr.pipelines.shards import parse_size, read_index, write_shards
from tests.helpers.videos import make_archive, make_video


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """12 VP9 videos of 3 classes and their manifest."""
    root = tmp_path_factory.mktemp("videos")
    for i in range(12):
        (root / f"c{i % 3}").mkdir(exist_ok=True)
        make_video(root / f"c{i % 3}" / f"v{i:02d}.webm", 20 + i, 64, 48, gop=8)
    path = root.parent / f"{root.name}.csv"
    index_tree(root, path, device="cpu", workers=1, progress=False)
    return path


def samples_of(out_dir):
    """{record path: (video bytes, record)} of every shard, read with tarfile."""
    found = {}
    for shard in sorted(out_dir.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        keys = {name.split(".", 1)[0] for name in members}
        for key in keys:
            rec = json.loads(members[f"{key}.json"])
            (video,) = [v for n, v in members.items() if n.startswith(key + ".") and not n.endswith(".json")]
            assert rec["path"] not in found, f"{rec['path']} packed twice"
            found[rec["path"]] = (video, rec)
    return found


def test_every_video_lands_in_exactly_one_shard_with_its_bytes_and_layout(manifest, tmp_path):
    out = tmp_path / "shards"
    index = write_shards(manifest, out, shard_size=parse_size("20KB"), shuffle_seed=3, progress=False)
    rows = list(csv.DictReader(open(manifest)))
    assert index["samples"] == len(rows) == 12 and index["failures"] == 0
    assert len(index["shards"]) > 1, index["shards"]  # 20 KB shards: the set does not fit one
    found = samples_of(out)
    assert set(found) == {r["path"] for r in rows}
    root = manifest.parent / rows[0]["root"]
    for r in rows:
        video, rec = found[r["path"]]
        assert video == (root / r["path"]).read_bytes(), r["path"]
        assert (rec["label"], rec["class_name"], rec["num_frames"]) == (int(r["label"]), r["class_name"],
                                                                         int(r["num_frames"]))
        want = gop.layout(np.frombuffer(video, np.uint8))
        assert rec["packets"]["offsets"] == want.offsets.tolist() and rec["packets"]["keyframe"][0] == 1
    for shard in index["shards"]:  # the index agrees with the files
        assert os.path.getsize(out / shard["name"]) == shard["bytes"]
    assert sum(s["samples"] for s in index["shards"]) == 12
    assert read_index(out)["classes"] == ["c0", "c1", "c2"]


def test_the_shards_read_with_the_webdataset_library(manifest, tmp_path):
    wds = pytest.importorskip("webdataset")
    out = tmp_path / "shards"
    write_shards(manifest, out, shard_size=parse_size("20KB"), progress=False)
    urls = sorted(str(p) for p in out.glob("shard-*.tar"))
    seen = [json.loads(s["json"])["path"] for s in wds.WebDataset(urls, shardshuffle=False)]
    assert sorted(seen) == sorted(r["path"] for r in csv.DictReader(open(manifest)))


def test_the_order_is_shuffled_by_the_seed_and_reproducible(manifest, tmp_path):
    def order(seed, name):
        write_shards(manifest, tmp_path / name, shard_size=10 ** 9, shuffle_seed=seed, progress=False)
        with tarfile.open(tmp_path / name / "shard-000000.tar") as tar:
            return [json.loads(tar.extractfile(m).read())["path"] for m in tar.getmembers() if m.name.endswith(".json")]

    a, again, other = order(1, "a"), order(1, "b"), order(2, "c")
    assert a == again and a != other and sorted(a) == sorted(other)
    assert a != sorted(a)


def test_a_rerun_keeps_finished_shards_and_writes_the_missing_one(manifest, tmp_path):
    out = tmp_path / "shards"
    index = write_shards(manifest, out, shard_size=parse_size("20KB"), progress=False)
    names = [s["name"] for s in index["shards"]]
    mtimes = {n: os.stat(out / n).st_mtime_ns for n in names}
    (out / names[1]).unlink()  # as if the run had died before renaming its second shard
    again = write_shards(manifest, out, shard_size=parse_size("20KB"), progress=False)
    assert again["shards"] == index["shards"]
    assert all(os.stat(out / n).st_mtime_ns == mtimes[n] for n in names if n != names[1])
    with pytest.raises(ValueError, match="other settings .*shard_size"):
        write_shards(manifest, out, shard_size=parse_size("1MB"), progress=False)


def test_damaged_or_missing_videos_are_listed_not_dropped(tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    for i in range(4):
        make_video(root / "a" / f"v{i}.webm", 20, 64, 48)
    index_tree(root, tmp_path / "m.csv", device="cpu", workers=1, progress=False)
    (root / "a" / "v1.webm").unlink()
    with open(root / "a" / "v2.webm", "ab") as f:
        f.write(b"junk")
    index = write_shards(tmp_path / "m.csv", tmp_path / "shards", progress=False)
    failures = {r["path"]: r["reason"] for r in csv.DictReader(open(tmp_path / "shards" / "shard.failures.csv"))}
    assert set(failures) == {"a/v1.webm", "a/v2.webm"}, failures
    assert "cannot read" in failures["a/v1.webm"] and "size changed" in failures["a/v2.webm"]
    assert index["samples"] == 2 and index["failures"] == 2


def test_frame_archives_carry_their_jpeg_table(tmp_path):
    root = tmp_path / "archives"
    (root / "a").mkdir(parents=True)
    for i in range(3):
        make_archive(root / "a" / f"v{i}.tar", 10 + i, 64, 48)
    index_tree(root, tmp_path / "m.csv", device="cpu", workers=1, progress=False)
    write_shards(tmp_path / "m.csv", tmp_path / "shards", progress=False)
    for path, (data, rec) in samples_of(tmp_path / "shards").items():
        want = frame_archive.read_index(root / path)
        assert rec["codec"] == "jpeg" and rec["jpegs"]["offsets"] == want.offsets.tolist()
        first = data[rec["jpegs"]["offsets"][0]:rec["jpegs"]["offsets"][0] + rec["jpegs"]["sizes"][0]]
        assert first[:2] == b"\xff\xd8", "the first frame's range is not a JPEG"


@pytest.mark.parametrize("text, size", [("1GB", 10 ** 9), ("500MB", 5 * 10 ** 8), ("64KiB", 65536), ("123", 123),
                                        ("1.5 GB", 1.5 * 10 ** 9)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "1XB", "0"])
def test_parse_size_names_bad_text(text):
    with pytest.raises(ValueError, match="shard size"):
        parse_size(text)


def test_shard_command_line(manifest, tmp_path, capsys):
    from timeclr.data import main

    assert main(["shard", str(manifest), str(tmp_path / "s"), "--shard-size", "1MB"]) == 0
    assert "12 videos in 1 shards" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="timeclr.data shard: error: shard size 'lots'"):
        main(["shard", str(manifest), str(tmp_path / "s2"), "--shard-size", "lots"])
    with pytest.raises(SystemExit, match="timeclr.data shard: error: .*nope.csv"):
        main(["shard", str(tmp_path / "nope.csv"), str(tmp_path / "s3")])
