"""The manifest indexer (timeclr.pipelines.ingest.index, .probe, .manifest; ``python -m timeclr.data index``) on small
generated videos and on the real clips in shared/data/real-clips."""
import csv
import multiprocessing
import os
import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from timeclr import data
from timeclr.errors import ManifestError, VideoError
from timeclr.pipelines.ingest import index
from timeclr.pipelines.storage import manifest
from timeclr.pipelines.storage.encode import write_video
from timeclr.pipelines.ingest.index import index_tree
from timeclr.pipelines.storage.manifest import COLUMNS, read_manifest
from timeclr.pipelines.ingest.probe import probe_video
from tests.helpers.fresh_fork import run_patched
from tests.helpers.videos import frame_index_image, make_audio_only, make_video

REAL_CLIPS = Path(__file__).resolve().parents[2] / "shared/data/real-clips"
needs_real_clips = pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason=f"real clips not found at {REAL_CLIPS}")

# Decoded frame counts and codecs from real-clips/README.md.
REAL_FRAMES = {
    "k400_arm_wrestling.mp4": (280, "h264"), "k400_cleaning_pool.mp4": (300, "h264"),
    "k400_eating_spaghetti.mp4": (300, "h264"), "ucf101_apply_eye_makeup.avi": (164, "mpeg4"),
    "street_426x240.mp4": (300, "h264"), "hd_1080p.mp4": (72, "h264"), "bigbuckbunny.mp4": (132, "h264"),
    "bikes.mp4": (250, "h264"), "Megamind.avi": (270, "mpeg4"), "Megamind_bugy.avi": (270, "mpeg4"),
    "tree.avi": (68, "cinepak"),
}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def outputs(manifest_path):
    """(manifest rows, rejects as {path: reason}) as written, paths relative to ROOT."""
    _, rejects_path = manifest.sidecar_paths(manifest_path)
    return read_csv(manifest_path), {r["path"]: r["reason"] for r in read_csv(rejects_path)}


def assert_each_candidate_once(root, manifest_path):
    rows, rejects = outputs(manifest_path)
    listed = [r["path"] for r in rows] + list(rejects)
    candidates = [p.relative_to(root).as_posix() for p in index.find_videos(root)]
    assert sorted(listed) == sorted(candidates)


def make_vfr_video(path, num_frames=30, gap_at=15, gap=10):
    """A VP9 .webm at a nominal 25 fps whose timestamps jump by ``gap`` frame times at ``gap_at``."""
    frames = [frame_index_image(i) for i in range(num_frames)]
    pts = [i + (gap if i >= gap_at else 0) for i in range(num_frames)]
    write_video(path, frames, "vp9", fps=25, pts=pts, time_base=Fraction(1, 25))
    return path


def cut_in_half(src, dst):
    data_ = Path(src).read_bytes()
    Path(dst).write_bytes(data_[: len(data_) // 2])


# ----------------------------------------------------------------------------------------------
# Generated videos


def test_vp9_tree_labels_and_measurements(tmp_path):
    root = tmp_path / "videos"
    spec = {  # class -> [(name, frames, fps, width, height)]; classes listed out of sorted order
        "walk": [("w1.webm", 20, 25, 80, 48), ("w2.webm", 33, 30, 96, 64)],
        "jump": [("j1.webm", 12, 25, 80, 48)],
        "run": [("r1.webm", 25, 24, 64, 48), ("sub/r2.WEBM", 9, 25, 80, 48)],
    }
    for cls, videos in spec.items():
        for name, n, fps, w, h in videos:
            (root / cls / name).parent.mkdir(parents=True, exist_ok=True)
            make_video(root / cls / name, n, width=w, height=h, fps=fps)
    (root / "walk" / "notes.txt").write_text("not a candidate: no video extension")
    (root / "walk" / ".hidden.webm").write_text("not a candidate: hidden")

    out = tmp_path / "out" / "train.csv"
    assert index_tree(root, out, device="cpu", workers=2, progress=False) == (5, 0)

    rows, classes = read_manifest(out)
    assert classes == ["jump", "run", "run/sub", "walk"]
    assert (tmp_path / "out" / "train.classes.txt").read_text().splitlines() == classes
    written = {r["path"]: r for r in read_csv(out)}
    assert set(written) == {"walk/w1.webm", "walk/w2.webm", "jump/j1.webm", "run/r1.webm", "run/sub/r2.WEBM"}
    assert sorted(r["path"] for r in rows) == sorted(written)
    by_name = {Path(r["path"]).name: r for r in rows}
    for cls, videos in spec.items():
        for name, n, fps, w, h in videos:
            row = by_name[Path(name).name]
            assert Path(row["abs_path"]) == (root / cls / name).resolve()
            assert row["class_name"] == Path(cls, name).parent.as_posix()
            assert row["label"] == classes.index(row["class_name"])
            assert (row["num_frames"], row["width"], row["height"], row["codec"]) == (n, w, h, "vp9")
            assert row["fps"] == pytest.approx(fps)
            assert row["duration"] == pytest.approx(n / fps, abs=1e-3)
            assert row["vfr"] is False


def test_rejects_each_unusable_file_with_its_reason(tmp_path):
    root = tmp_path / "videos"
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    make_video(root / "good" / "ok.webm", 24)
    make_video(tmp_path / "full.webm", 48)
    cut_in_half(tmp_path / "full.webm", root / "bad" / "cut.webm")
    make_video(tmp_path / "full.mp4", 48, codec="libx264")
    cut_in_half(tmp_path / "full.mp4", root / "bad" / "cut.mp4")  # its index (moov) came last
    (root / "bad" / "empty.mp4").touch()
    (root / "bad" / "text.mp4").write_text("hello, I am a text file\n" * 20)
    make_video(root / "bad" / "h264.mp4", 24, codec="libx264")
    make_video(root / "stray.webm", 12)  # directly in ROOT: no class

    out = tmp_path / "m.csv"
    assert index_tree(root, out, device="cpu", workers=1, progress=False) == (1, 6)

    rows, rejects = outputs(out)
    assert [r["path"] for r in rows] == ["good/ok.webm"]
    assert rejects["bad/cut.webm"].startswith("truncated: decoded frames end at")
    assert rejects["bad/cut.mp4"].startswith("truncated: MP4 box 'mdat'")
    assert rejects["bad/empty.mp4"] == "zero bytes"
    assert rejects["bad/text.mp4"].startswith("not a video: PyAV cannot open it")
    assert rejects["bad/h264.mp4"].startswith("codec h264 not decodable on cpu")
    assert rejects["stray.webm"].startswith("no class folder")
    # The class list keeps classes whose videos were all rejected, so labels do not depend on them.
    assert read_manifest(out)[1] == ["bad", "good"]
    assert_each_candidate_once(root, out)


def test_h264_is_rejected_on_cpu_and_accepted_on_gpu(tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    make_video(root / "a" / "clip.mp4", 30, codec="libx264")
    assert index_tree(root, tmp_path / "cpu.csv", device="cpu", workers=1, progress=False) == (0, 1)
    assert index_tree(root, tmp_path / "gpu.csv", device="gpu", workers=1, progress=False) == (1, 0)
    (row,), _ = outputs(tmp_path / "gpu.csv")
    assert (row["codec"], row["num_frames"], row["label"]) == ("h264", "30", "0")


def test_index_for_the_gpu_refuses_what_nvdec_cannot_decode(tmp_path):
    """DALI's mixed decoder refuses MJPEG and (on Hopper) AV1, and NVDEC decodes only 8-bit 4:2:0
    from a minimum size: such files pass PyAV, so indexing for the GPU must reject them, each with
    a reason that names codec and format; a plain 4:2:0 H.264 file of a fine size is kept."""
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    frames = [frame_index_image(i, 160, 96) for i in range(12)]
    write_video(root / "a" / "ok.mp4", frames, "h264")
    write_video(root / "a" / "mjpeg.avi", frames, "mjpeg")
    write_video(root / "a" / "av1.mkv", frames, "av1")
    write_video(root / "a" / "h264_422.mp4", frames, "h264", pix_fmt="yuv422p")
    write_video(root / "a" / "h264_10bit.mp4", frames, "h264", pix_fmt="yuv420p10le")
    write_video(root / "a" / "tiny.mp4", [frame_index_image(i, 40, 16) for i in range(12)], "h264")
    out = tmp_path / "gpu.csv"
    assert index_tree(root, out, device="gpu", workers=1, progress=False) == (1, 5)
    rows, rejects = outputs(out)
    assert [r["path"] for r in rows] == ["a/ok.mp4"], rows
    want = {"a/mjpeg.avi": "codec mjpeg not decodable on gpu", "a/av1.mkv": "codec av1 not decodable on gpu",
            "a/h264_422.mp4": "codec h264 yuv422p not decodable on gpu: NVDEC decodes 8-bit 4:2:0",
            "a/h264_10bit.mp4": "codec h264 yuv420p10le not decodable on gpu",
            "a/tiny.mp4": "codec h264 40x16 not decodable on gpu: NVDEC decodes h264 from 48x16 up"}
    for path, reason in want.items():
        assert rejects[path].startswith(reason), (path, rejects[path])
    # the same files on the CPU: MJPEG is DALI's CPU backend's, the rest are refused for their codec
    assert index_tree(root, tmp_path / "cpu.csv", device="cpu", workers=1, progress=False) == (1, 5)
    assert [r["path"] for r in outputs(tmp_path / "cpu.csv")[0]] == ["a/mjpeg.avi"]


def test_probe_rejects_a_file_without_video(tmp_path):
    path = make_audio_only(tmp_path / "sound.mp4")
    with pytest.raises(VideoError, match="^no video stream: audio streams only"):
        probe_video(path, "cpu")


def test_variable_frame_rate_is_rejected_unless_allowed(tmp_path, capsys):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    make_vfr_video(root / "a" / "vfr.webm")
    make_video(root / "a" / "cfr.webm", 30)

    info = probe_video(root / "a" / "vfr.webm", "cpu")
    assert info["vfr"] and info["num_frames"] == 30
    assert info["duration"] == pytest.approx(40 / 25)  # 30 frames + a 10-frame gap

    assert index_tree(root, tmp_path / "strict.csv", device="cpu", workers=1, progress=False) == (1, 1)
    _, rejects = outputs(tmp_path / "strict.csv")
    assert rejects["a/vfr.webm"].startswith("variable frame rate")
    assert "python -m timeclr.data prepare" in rejects["a/vfr.webm"]

    capsys.readouterr()
    assert index_tree(root, tmp_path / "lax.csv", device="cpu", workers=1, allow_vfr=True, progress=False) == (2, 0)
    rows, _ = outputs(tmp_path / "lax.csv")
    assert {r["path"]: r["vfr"] for r in rows} == {"a/cfr.webm": "0", "a/vfr.webm": "1"}
    err = capsys.readouterr().err
    assert "a/vfr.webm" in err and "python -m timeclr.data prepare" in err


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                    reason="the crash is injected by patching the parent, which only fork carries over")
def test_a_crashing_decoder_rejects_only_its_file(tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    for name in ("v1.webm", "v2.webm", "crash.webm", "v3.webm"):
        make_video(root / "a" / name, 12)
    # the probe of crash.webm dies as a segfaulting decoder would; the patch reaches the workers
    # only if they are forked from the patched process
    assert run_patched("index_tree", "index.probe_video", "crash.webm", "crash", [root, tmp_path / "m.csv"],
                       dict(device="cpu", workers=2, progress=False)) == [3, 1]
    _, rejects = outputs(tmp_path / "m.csv")
    assert rejects == {"a/crash.webm": "unreadable: the decoder crashed the probe process"}


def test_read_manifest_follows_a_moved_dataset(tmp_path):
    root = tmp_path / "project" / "videos"
    (root / "a").mkdir(parents=True)
    make_video(root / "a" / "x.webm", 10)
    index_tree(root, tmp_path / "project" / "lists" / "m.csv", device="cpu", workers=1, progress=False)
    assert (tmp_path / "project" / "lists" / "m.csv").read_text().startswith(",".join(COLUMNS) + "\n")
    assert [r["root"] for r in read_csv(tmp_path / "project" / "lists" / "m.csv")] == ["../videos"]

    shutil.move(tmp_path / "project", tmp_path / "moved")
    rows, classes = read_manifest(tmp_path / "moved" / "lists" / "m.csv")
    assert classes == ["a"] and rows[0]["path"] == "a/x.webm"
    assert Path(rows[0]["abs_path"]) == (tmp_path / "moved" / "videos" / "a" / "x.webm").resolve()
    rows, _ = read_manifest(tmp_path / "moved" / "lists" / "m.csv", root=tmp_path / "elsewhere")
    assert Path(rows[0]["abs_path"]) == (tmp_path / "elsewhere" / "a" / "x.webm").resolve()


def test_the_manifest_is_a_plain_csv(tmp_path):
    import pandas

    root = tmp_path / "videos"
    for cls, n in (("cats", 12), ("dogs", 15)):
        (root / cls).mkdir(parents=True)
        make_video(root / cls / "a.webm", n)
    out = tmp_path / "lists" / "m.csv"
    assert index_tree(root, out, device="cpu", workers=1, progress=False) == (2, 0)

    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == list(COLUMNS)
    assert [(r["path"], r["label"], r["class_name"], r["num_frames"], r["codec"], r["root"]) for r in rows] == [
        ("cats/a.webm", "0", "cats", "12", "vp9", "../videos"), ("dogs/a.webm", "1", "dogs", "15", "vp9", "../videos")]

    table = pandas.read_csv(out)
    assert list(table.columns) == list(COLUMNS)
    assert table["path"].tolist() == ["cats/a.webm", "dogs/a.webm"]
    assert table["label"].tolist() == [0, 1] and table["num_frames"].tolist() == [12, 15]
    for rel in table["root"] + "/" + table["path"]:
        assert (out.parent / rel).is_file()
    _, rejects_path = manifest.sidecar_paths(out)
    assert list(pandas.read_csv(rejects_path).columns) == ["path", "reason"]


def test_an_old_format_manifest_still_loads_with_a_note(tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    make_video(root / "a" / "x.webm", 10)
    old = tmp_path / "lists" / "old.csv"
    old.parent.mkdir()
    old.write_text("# root: ../videos\n"
                   "path,label,class_name,num_frames,fps,duration,width,height,codec,vfr,bytes\n"
                   f"a/x.webm,0,a,10,25.0,0.4,80,48,vp9,0,{(root / 'a' / 'x.webm').stat().st_size}\n")
    old.with_suffix(".classes.txt").write_text("a\n")
    with pytest.warns(UserWarning, match="old-format manifest.*re-index"):
        rows, classes = read_manifest(old)
    assert classes == ["a"] and [r["path"] for r in rows] == ["a/x.webm"] and rows[0]["num_frames"] == 10
    assert Path(rows[0]["abs_path"]) == (root / "a" / "x.webm").resolve()
    with pytest.warns(UserWarning):
        rows, _ = read_manifest(old, root=tmp_path / "elsewhere")
    assert Path(rows[0]["abs_path"]) == (tmp_path / "elsewhere" / "a" / "x.webm").resolve()


def test_a_csv_that_is_not_a_manifest_is_refused(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("name,score\nx,1\n")
    path.with_suffix(".classes.txt").write_text("a\n")
    with pytest.raises(ManifestError, match="not a manifest"):
        read_manifest(path)


def test_the_video_pipeline_reads_the_manifest(tmp_path):
    from timeclr.pipelines.loader.clip_source import read_videos  # the DALI pipeline's reader of our format

    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    make_video(root / "a" / "x.webm", 14)
    index_tree(root, tmp_path / "m.csv", device="cpu", workers=1, progress=False)
    (video,) = read_videos(tmp_path / "m.csv")
    assert (Path(video.path), video.label, video.num_frames) == ((root / "a" / "x.webm").resolve(), 0, 14)


# ----------------------------------------------------------------------------------------------
# The command line


def test_cli_index_prints_counts_and_writes_both_csvs(tmp_path, capsys):
    root = tmp_path / "videos"
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        make_video(root / cls / "a.webm", 15)
    (root / "dogs" / "broken.avi").write_bytes(b"")

    out = tmp_path / "m.csv"
    assert data.main(["index", str(root), "-o", str(out), "--device", "cpu", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 accepted, 1 rejected" in printed
    assert str(out) in printed and str(tmp_path / "m.rejects.csv") in printed
    rows, rejects = outputs(out)
    assert [(r["path"], r["label"]) for r in rows] == [("cats/a.webm", "0"), ("dogs/a.webm", "1")]
    assert rejects == {"dogs/broken.avi": "zero bytes"}
    assert_each_candidate_once(root, out)


def test_cli_errors_name_the_root(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(SystemExit, match=str(missing)):
        data.main(["index", str(missing), "-o", str(tmp_path / "m.csv")])
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "readme.txt").write_text("no videos here")
    with pytest.raises(SystemExit, match="no video files"):
        data.main(["index", str(tmp_path / "empty"), "-o", str(tmp_path / "m.csv")])


# ----------------------------------------------------------------------------------------------
# The real clips


@pytest.fixture
def real_tree(tmp_path):
    """A copy of the real clips as one class, ``ROOT/real/<clip>``."""
    if not REAL_CLIPS.is_dir():
        pytest.skip(f"real clips not found at {REAL_CLIPS}")
    root = tmp_path / "real_root"
    (root / "real").mkdir(parents=True)
    for name in REAL_FRAMES:
        shutil.copyfile(REAL_CLIPS / name, root / "real" / name)
    return root


def test_real_clips_on_cpu_are_all_rejected_for_their_codec(real_tree, tmp_path):
    out = tmp_path / "m.csv"
    assert index_tree(real_tree, out, device="cpu", workers=2, progress=False) == (0, len(REAL_FRAMES))
    _, rejects = outputs(out)
    for name, (_, codec) in REAL_FRAMES.items():
        assert rejects[f"real/{name}"].startswith(f"codec {codec} not decodable on cpu")
    assert_each_candidate_once(real_tree, out)


def test_real_clips_on_gpu_frame_counts_and_vfr(real_tree, tmp_path):
    out = tmp_path / "m.csv"
    avi = [name for name in REAL_FRAMES if name.endswith(".avi")]
    accepted = len(REAL_FRAMES) - len(avi)  # the MP4s: AVI needs prepare first, Cinepak decodes nowhere
    assert index_tree(real_tree, out, device="gpu", workers=2, allow_vfr=True, progress=False) == (accepted, len(avi))
    rows, rejects = outputs(out)
    assert rejects["real/tree.avi"].startswith("codec cinepak not decodable on gpu")
    for name in avi:
        if name != "tree.avi":  # MPEG-4 in AVI: packed B-frames may come out of the GPU decoder unordered
            assert rejects[f"real/{name}"].startswith("container avi not safe on gpu"), rejects[f"real/{name}"]
            assert "prepare" in rejects[f"real/{name}"]
            assert probe_video(real_tree / "real" / name)["num_frames"] == REAL_FRAMES[name][0]
    for row in rows:
        assert (int(row["num_frames"]), row["codec"]) == REAL_FRAMES[Path(row["path"]).name]
    assert [r["path"] for r in rows if r["vfr"] == "1"] == ["real/hd_1080p.mp4"]


@needs_real_clips
def test_probe_flags_the_real_variable_frame_rate_clips():
    tree = probe_video(REAL_CLIPS / "tree.avi")  # no device: Cinepak decodes on neither
    assert tree["num_frames"] == 68  # its header claims 444
    assert tree["vfr"] and tree["duration"] == pytest.approx(29.6, abs=0.01)
    with pytest.raises(VideoError, match="^codec cinepak not decodable on gpu"):
        probe_video(REAL_CLIPS / "tree.avi", "gpu")

    hd = probe_video(REAL_CLIPS / "hd_1080p.mp4", "gpu")
    assert hd["vfr"] and hd["num_frames"] == 72 and hd["duration"] == pytest.approx(2.567, abs=0.01)
    assert not probe_video(REAL_CLIPS / "Megamind.avi")["vfr"]  # timestamps out of order, yet even


HELD_LOCK = """
import threading, time
from tests.helpers import locked
from timeclr.pipelines.ingest.pool import run_per_file
threading.Thread(target=lambda: (locked.LOCK.acquire(), time.sleep(600)), daemon=True).start()
time.sleep(0.2)  # the lock is held by another thread now, as DALI's or torch's threads hold theirs
out = run_per_file(locked.task, {{k: (k,) for k in range(4)}}, workers=2, desc="t", on_failure=None, progress=False)
print(sorted(out.items()))
"""


def test_the_worker_pool_never_forks_a_threaded_caller(tmp_path):
    """run_per_file from a process whose other thread holds a lock the task needs: forked workers
    would inherit the held lock and hang; the fork server's workers finish."""
    import signal
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # its own process group: on a hang, the caller and its stuck workers are killed together
    p = subprocess.Popen([sys.executable, "-c", HELD_LOCK.format()], cwd=repo, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail("run_per_file hung: its workers were forked while another thread held a lock")
    assert p.returncode == 0 and "[(0, 0), (1, 2), (2, 4), (3, 6)]" in out, out + err[-2000:]
