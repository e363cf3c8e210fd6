"""A full disk (issue #25): every write that hits ENOSPC ends its command in one line naming the
file, and what was written before stays whole. The full disk is /dev/full, whose writes fail with
ENOSPC: a temporary file linked to it fails as a file on a full disk would, through the real
writers (tarfile, json, torch.save). A checkpoint that hits it: tests/test_checkpoint_trust.py."""
import json
import os
import tarfile
from pathlib import Path

import pytest

from timeclr.files import atomic
from timeclr.data import main as data_main
from timeclr.errors import DiskFull
from timeclr.pipelines.ingest.index import index_tree
from tests.helpers.fresh_fork import run_patched
from tests.helpers.videos import make_video

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def fill_disk_at(monkeypatch, name_matches, nth: int = 1):
    """From the ``nth`` temporary file whose destination's name passes ``name_matches`` on, every
    temporary file is a link to /dev/full: the disk is full from then on."""
    real, seen = atomic.temp_path, []

    def temp_path(path):
        tmp = real(path)
        if name_matches(Path(path).name):
            seen.append(path)
            if len(seen) >= nth:
                os.symlink("/dev/full", tmp)
        return tmp

    monkeypatch.setattr(atomic, "temp_path", temp_path)
    return lambda: monkeypatch.setattr(atomic, "temp_path", real)


def one_line(e) -> str:
    message = str(e.value)
    assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
    return message


def test_disk_full_is_its_own_error_naming_the_file_and_the_old_file_stays(tmp_path, monkeypatch):
    (tmp_path / "x.json").write_text("old")
    fill_disk_at(monkeypatch, lambda name: name == "x.json")
    with pytest.raises(DiskFull) as e:
        atomic.write_json(tmp_path / "x.json", {"a": "b" * 100000})
    assert str(tmp_path / "x.json") in str(e.value) and "free there" in str(e.value), str(e.value)
    assert (tmp_path / "x.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"], "the temporary file (link) is left"


def test_sharding_onto_a_full_disk_stops_in_one_line_and_the_written_shards_stay_whole(tmp_path, monkeypatch):
    root = tmp_path / "videos"
    for i in range(6):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        make_video(root / f"c{i % 2}" / f"v{i}.webm", 20, 64, 48, gop=8)
    index_tree(root, tmp_path / "m.csv", device="cpu", workers=1, progress=False)
    out = tmp_path / "shards"
    args = ["shard", str(tmp_path / "m.csv"), str(out), "--shard-size", "1KB"]  # a shard per video

    restore = fill_disk_at(monkeypatch, lambda name: name.startswith("shard-"), nth=2)
    with pytest.raises(SystemExit) as e:
        data_main(args)
    message = one_line(e)
    assert "No space left on device" in message and str(out / "shard-000001.tar") in message, message
    with tarfile.open(out / "shard-000000.tar") as tar:  # the shard written before is whole
        assert tar.getmembers(), "the first shard is empty"
    leftovers = sorted(p.name for p in out.iterdir() if p.name.endswith(".tar") and p.name.startswith("."))
    assert not (out / "shard-000001.tar").exists() and not leftovers and not (out / "shards.json").exists(), \
        sorted(p.name for p in out.iterdir())

    restore()
    assert data_main(args) == 0  # the same command, with space again, finishes the set
    index = json.loads((out / "shards.json").read_text())
    assert index["samples"] == 6 and index["failures"] == 0, index


@pytest.mark.parametrize("codec", ["jpeg", "h264"])
def test_preparing_onto_a_full_disk_stops_in_one_line_and_the_finished_outputs_stay(tmp_path, codec):
    """The third output's part file is the full disk (prepare writes under part names, not
    atomic's): the command stops in one line naming DST; the outputs finished before are whole
    and no part file is left; the same command prepares the rest once there is space."""
    from timeclr.pipelines.ingest import transcode

    src = tmp_path / "src"
    for i in range(4):
        (src / "c").mkdir(parents=True, exist_ok=True)
        make_video(src / "c" / f"v{i}.webm", 12, 32, 32)
    dst = tmp_path / "dst"
    args = ["prepare", str(src), str(dst), "--codec", codec, "--workers", "1"]
    # in a fresh process whose worker is forked from it, so that it sees the patched part_path
    # (tests/helpers/fresh_fork.py): forked from this test process it once hung in DALI's teardown
    result = run_patched("data_main", "transcode.part_path", 3, "full", args, {})
    assert "SystemExit" in result, result
    message = result["SystemExit"]
    assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
    assert str(dst) in message and "the disk filled up" in message and "the 2 outputs written are whole" in message, \
        message
    outputs = sorted(p.name for p in (dst / "c").iterdir())
    assert outputs == [f"v0{transcode.CODECS[codec][1]}", f"v1{transcode.CODECS[codec][1]}"], outputs

    assert data_main(args) == 0
    assert len(list((dst / "c").iterdir())) == 4
