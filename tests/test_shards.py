"""WebDataset shards written from a manifest (``timeclr.data shard``).

References: Python's ``tarfile`` and the ``webdataset`` library (the format's own reader, when
installed) read the shards back; the files' own bytes and ``gop.packet_index`` / ``frame_archive``'s
member table are what each sample must carry.
"""
import csv
import json
import os
import tarfile

import numpy as np
import pytest

from timeclr.pipelines.storage import frame_archive, gop
from timeclr.pipelines.ingest.index import index_tree
from timeclr.pipelines.storage.shards import parse_size, read_index, write_shards
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


def test_every_video_lands_in_exactly_one_shard_with_its_bytes_and_packet_index(manifest, tmp_path):
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
        want = gop.packet_index(np.frombuffer(video, np.uint8))
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


# ---------------------------------------------------------------------------------------------
# reading: pipelines/storage/shard_stream.py
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_dir(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_shards(manifest, out, shard_size=parse_size("15KB"), shuffle_seed=1, progress=False)
    return out


def keys(stream, epoch, skip=0):
    return [s.key for s in stream.samples(epoch, skip)]


@pytest.mark.parametrize("world", [1, 3, 4])
def test_ranks_read_every_sample_exactly_once_per_epoch(shard_dir, world):
    from timeclr.pipelines.storage.shard_stream import ShardStream

    total = read_index(shard_dir)["samples"]
    orders = []
    for epoch in range(2):
        seen = [keys(ShardStream(str(shard_dir), r, world, seed=5, buffer=4), epoch) for r in range(world)]
        flat = [k for ks in seen for k in ks]
        assert sorted(flat) == list(range(total)), f"epoch {epoch}, {world} ranks: {seen}"
        assert max(map(len, seen)) - min(map(len, seen)) <= 1, [len(s) for s in seen]
        orders.append(flat)
    assert orders[0] != orders[1], "two epochs read in the same order"


def test_the_stream_is_reproducible_and_resumes_exactly(shard_dir):
    from timeclr.pipelines.storage.shard_stream import ShardStream

    stream = ShardStream(str(shard_dir), 1, 2, seed=3, buffer=4)
    whole = keys(stream, 2)
    assert whole == keys(ShardStream(str(shard_dir), 1, 2, seed=3, buffer=4), 2)
    for k in (0, 1, 4, len(whole) - 1, len(whole)):
        assert keys(stream, 2, skip=k) == whole[k:], f"resume after {k} samples"
    assert whole != sorted(whole), "the buffer did not shuffle"


def test_shards_read_over_http_as_from_the_folder(shard_dir):
    import functools
    import http.server
    import threading

    from timeclr.pipelines.storage.shard_stream import ShardStream

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shard_dir))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        local, remote = ShardStream(str(shard_dir), 0, 2, seed=1), ShardStream(url, 0, 2, seed=1)
        got = {s.key: s.data for s in remote.samples(0)}
        assert list(got) == keys(local, 0)
        assert all(got[s.key] == s.data for s in local.samples(0))
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_shard_index_is_named(tmp_path):
    from timeclr.errors import ManifestError
    from timeclr.pipelines.storage.shard_stream import ShardStream

    with pytest.raises(ManifestError, match="shards.json: cannot read the shard index"):
        ShardStream(str(tmp_path))


# ---------------------------------------------------------------------------------------------
# the DALI loader over shards
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["vp9", "jpeg"])
def index_shards(tmp_path_factory, request):
    """10 videos of index frames (VP9, GOP 8, or frame archives) in 3 shards, and their frame counts."""
    root = tmp_path_factory.mktemp(f"index-{request.param}")
    counts = {}
    for i in range(10):
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        n = 24 + 3 * i
        if request.param == "jpeg":
            make_archive(root / f"c{i % 2}" / f"v{i}.tar", n, 80, 80)
        else:
            make_video(root / f"c{i % 2}" / f"v{i}.webm", n, 80, 80, gop=8)
    manifest = root.parent / f"{root.name}.csv"
    index_tree(root, manifest, device="cpu", workers=1, progress=False)
    out = root.parent / f"{root.name}-shards"
    write_shards(manifest, out, shard_size=parse_size("60KB" if request.param == "vp9" else "300KB"), progress=False)
    for shard in sorted(out.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    counts[int(m.name.split(".")[0])] = json.loads(tar.extractfile(m).read())["num_frames"]
    return out, counts


def shard_loader(out, rank, world, *overrides):
    from timeclr.config import load_config
    from timeclr.pipelines.loader.video import VideoLoader

    data = load_config("pipelines/debug.yaml", ["data.manifest=unused", f"data.shards={out}", "data.batch_size=2",
                                                "data.augment=false", "data.short_side=80", "data.views.0.crop_size=80",
                                                "data.views.1.crop_size=80", "data.shuffle_buffer=3",
                                                *overrides]).data
    return VideoLoader(data, shard_id=rank, num_shards=world, uint8=True), data


def test_the_loader_reads_shards_over_two_ranks_once_per_epoch_with_the_selected_frames(index_shards):
    from tests.helpers.videos import read_frame_index
    from timeclr.pipelines.loader.frame_selection import view_indices

    out, counts = index_shards
    loaders = [shard_loader(out, r, 2) for r in range(2)]
    for epoch in range(2):
        seen = []
        for loader, data in loaders:
            for batch in loader:
                for b, key in enumerate(batch["index"].tolist()):
                    seen.append(key)
                    rng = np.random.default_rng([data.seed, epoch, key])
                    for v, (view_cfg, view, frames) in enumerate(zip(data.views, batch["views"], batch["frame_indices"])):
                        want = view_indices(view_cfg, counts[key], True, rng)
                        assert frames[b].tolist() == want.tolist(), f"epoch {epoch} sample {key} view {v}"
                        shown = [read_frame_index(f) for f in view[b].numpy()]
                        assert shown == want.tolist(), f"sample {key} view {v}: shows {shown}, selected {want}"
        assert sorted(seen) == sorted(counts), f"epoch {epoch}: {sorted(seen)}"


def test_a_resumed_shard_loader_gives_the_same_batches(index_shards):
    out, _ = index_shards
    loader, _ = shard_loader(out, 1, 2)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    rest = [b["index"].tolist() for b in it]
    loader.epoch += 0
    resumed, _ = shard_loader(out, 1, 2)
    resumed.load_state_dict(state)
    assert [b["index"].tolist() for b in resumed] == rest and rest
