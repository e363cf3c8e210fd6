"""Preparing a video tree (timeclr.pipelines.ingest.prepare, .transcode): constant frame rate chosen by timestamps,
fixed closed GOPs, resizing, atomic and resumable outputs, failures reported, on generated index
videos with irregular timestamps (an exact oracle) and on the real clips in shared/data/real-clips."""
import csv
import io
import multiprocessing
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from timeclr.errors import VideoError
from timeclr.pipelines.ingest import index, transcode
from timeclr.pipelines.storage import gop
from timeclr.pipelines.storage.encode import write_video
from timeclr.pipelines.ingest.prepare import output_path, prepare_tree
from timeclr.pipelines.ingest.probe import probe_video
from timeclr.pipelines.ingest.transcode import check_settings, output_size, part_path, prepare_video
from tests.helpers.fresh_fork import run_patched
from tests.helpers.videos import frame_index_image, make_audio_only, make_video, read_frame_index

REAL_CLIPS = Path(__file__).resolve().parents[2] / "shared/data/real-clips"
needs_real_clips = pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason=f"real clips not found at {REAL_CLIPS}")
EXT = {"h264": ".mp4", "vp9": ".webm"}


def make_timed_video(path, times_ms, width=160, height=96, rate=25):
    """A VP9 index video (frame i shows i) whose frame i is stamped ``times_ms[i]`` ms, nominal
    ``rate`` fps. WebM keeps millisecond timestamps exactly."""
    frames = [frame_index_image(i, width, height) for i in range(len(times_ms))]
    write_video(path, frames, "vp9", fps=rate, pts=times_ms, time_base=Fraction(1, 1000), crf=10)
    return path


def decoded_timing(path):
    """(times as Fractions of a second from the first frame, in decoder order with the timestamps
    sorted, and the duration: last time + the last frame's duration), decoded by PyAV."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stamps = [(f.pts, f.duration) for f in c.decode(stream)]
        tb, nominal = stream.time_base, stream.average_rate or stream.guessed_rate
    pts = sorted(p for p, _ in stamps)
    last_duration = max(stamps)[1] or round(1 / (nominal * tb))
    times = [(p - pts[0]) * tb for p in pts]
    return times, times[-1] + last_duration * tb


def shown_at(times, t) -> int:
    """Index of the source frame on screen at time t: the last one whose time is <= t."""
    return max(i for i, s in enumerate(times) if s <= t)


def expected_count(duration, fps) -> int:
    return max(1, int(duration * fps + Fraction(1, 2)))


def output_packets(path):
    """(keyframe flags of the video packets, number of streams, average rate) of an output."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        flags = [p.is_keyframe for p in c.demux(stream) if p.size]
        return flags, len(c.streams), stream.average_rate


def assert_keyframes_every(path, interval, frames):
    flags, n_streams, _ = output_packets(path)
    assert len(flags) == frames, f"{path.name}: {len(flags)} packets for {frames} frames"
    keyframes = [i for i, k in enumerate(flags) if k]
    assert keyframes == list(range(0, frames, interval)), f"{path.name}: keyframes at {keyframes}, want every {interval}"
    assert n_streams == 1, f"{path.name}: {n_streams} streams, want the video only"


# ----------------------------------------------------------------------------------------------
# Generated videos with irregular timestamps: the exact oracle


TIMES_MS = [0, 40, 80, 200, 240, 250, 260, 300, 700, 740, 760, 1000]  # a gap, a burst, a tie at 200 ms


@pytest.mark.parametrize("codec, fps, size, short_side", [
    ("h264", None, (160, 96), None),   # the nominal 25 fps, size kept
    ("vp9", None, (320, 192), 96),     # halved
    ("h264", 10, (160, 96), 96),       # fewer frames than the source: frames dropped
    ("vp9", 30, (96, 160), 96),        # portrait, output times between the source's
])
def test_irregular_timestamps_become_a_constant_rate(tmp_path, codec, fps, size, short_side):
    src = make_timed_video(tmp_path / "src.webm", TIMES_MS, *size)
    times, duration = decoded_timing(src)
    assert times == [Fraction(t, 1000) for t in TIMES_MS], f"test source timestamps: {times}"
    assert duration == Fraction(1040, 1000), f"test source duration {duration}"

    out = tmp_path / ("out" + EXT[codec])
    info = prepare_video(src, out, codec, short_side=short_side, gop=4, fps=fps)
    rate = Fraction(fps or 25)
    n = expected_count(duration, rate)
    want_size = size if short_side is None else output_size(*size, short_side)
    assert (info["frames"], info["fps"], info["width"], info["height"]) == (n, rate, *want_size), info
    assert info["duration"] == pytest.approx(1.04) and info["source_frames"] == len(TIMES_MS), info

    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        decoded = [(f.pts * stream.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(stream)]
    assert len(decoded) == n, f"{len(decoded)} frames decoded, want round({float(duration)} s * {rate} fps) = {n}"
    shown = [read_frame_index(img) for _, img in decoded]
    want = [shown_at(times, Fraction(k) / rate) for k in range(n)]
    assert shown == want, f"source index shown by each output frame: got {shown}, want {want}"
    stamps = [float(t) for t, _ in decoded]
    assert stamps == pytest.approx([k / float(rate) for k in range(n)], abs=1e-3), f"output times {stamps}"
    assert decoded[0][1].shape[:2] == want_size[::-1]
    assert_keyframes_every(out, 4, n)
    assert not part_path(out).exists()


def test_output_size_keeps_aspect_with_even_sides():
    assert output_size(340, 256, 128) == (170, 128)
    assert output_size(256, 340, 128) == (128, 170)
    assert output_size(1920, 1080, 96) == (170, 96)
    assert output_size(64, 48, 96) == (128, 96)  # scaled up too: every output has the same short side
    assert output_size(427, 241, None) == (426, 240)
    assert output_size(426, 240, None) == (426, 240)


def test_gop_16_default_and_the_index_video_keeps_every_frame(tmp_path):
    src = make_video(tmp_path / "src.mp4", 50, width=160, height=96, fps=25, codec="libx264", gop=50)
    out = tmp_path / "out.webm"
    info = prepare_video(src, out, "vp9")
    assert (info["frames"], info["fps"], info["width"], info["height"]) == (50, 25, 160, 96), info
    with av.open(str(out)) as c:
        shown = [read_frame_index(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert shown == list(range(50)), f"source index shown by each output frame: {shown}"
    assert_keyframes_every(out, transcode.DEFAULT_GOP, 50)
    probed = probe_video(out, "cpu")
    assert (probed["num_frames"], probed["vfr"], probed["codec"]) == (50, False, "vp9"), probed
    # What GOP trimming needs: frame k is packet k, decodable from its keyframe on.
    data = np.fromfile(out, np.uint8)
    packets = gop.packet_index(data)
    assert np.flatnonzero(packets.keyframe).tolist() == [0, 16, 32, 48], packets.keyframe
    ivf, positions = gop.trim_to_gops(data, np.array([20, 37]), 50, packets)
    with av.open(io.BytesIO(ivf.tobytes()), format="ivf") as c:
        trimmed = [read_frame_index(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert [trimmed[p] for p in positions] == [20, 37], f"trimmed stream shows {trimmed} at {positions}"


# ----------------------------------------------------------------------------------------------
# Resuming, atomic outputs, failures


def small_tree(root, names=("a/v1.webm", "a/v2.webm", "b/v3.webm")):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        make_video(root / name, 20, width=80, height=48)
    return root


def run(src, dst, **kw):
    kw = {"codec": "h264", "short_side": 48, "gop": 8, "workers": 1, "progress": False, **kw}
    return prepare_tree(src, dst, **kw)


def parts_under(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*.part.*"))


def test_rerun_skips_finished_outputs_and_replaces_leftover_parts(tmp_path, capsys):
    src, dst = small_tree(tmp_path / "src"), tmp_path / "dst"
    report = run(src, dst, workers=2)
    assert (report.done, report.skipped, report.failed) == (["a/v1.webm", "a/v2.webm", "b/v3.webm"], [], {}), report
    outs = {name: dst / name for name in ("a/v1.mp4", "a/v2.mp4", "b/v3.mp4")}
    assert all(p.is_file() for p in outs.values()), sorted(dst.rglob("*"))
    mtimes = {name: p.stat().st_mtime_ns for name, p in outs.items()}
    assert "3 prepared, 0 skipped (already done), 0 failed" in capsys.readouterr().out

    # An interrupted run: v2's output never made it past its part name; another part is stray.
    outs["a/v2.mp4"].unlink()
    part_path(outs["a/v2.mp4"]).write_bytes(b"\0" * 1000)
    part_path(dst / "b/gone.mp4").write_bytes(b"half a video")
    report = run(src, dst)
    assert (report.done, report.skipped, report.failed) == (["a/v2.webm"], ["a/v1.webm", "b/v3.webm"], {}), report
    for name in ("a/v1.mp4", "b/v3.mp4"):
        assert outs[name].stat().st_mtime_ns == mtimes[name], f"{name} was rewritten"
    with av.open(str(outs["a/v2.mp4"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 20
    assert parts_under(dst) == [], f"leftover part files: {parts_under(dst)}"
    assert "1 prepared, 2 skipped (already done), 0 failed" in capsys.readouterr().out
    # The part names are hidden: the indexer never takes a leftover for a video.
    part_path(outs["a/v1.mp4"]).write_bytes(b"x")
    assert outs["a/v1.mp4"] in index.find_videos(dst) and len(index.find_videos(dst)) == 3


def test_a_failure_mid_file_leaves_neither_output_nor_part(tmp_path, monkeypatch):
    src, dst = small_tree(tmp_path / "src", ("a/v1.webm", "a/bad.webm", "a/v2.webm")), tmp_path / "dst"
    real_show = transcode._Writer.show

    def failing_show(self, time, frame):
        self.shown = getattr(self, "shown", 0) + 1
        if "bad" in str(self.out.name) and self.shown > 5:  # the sixth frame of bad.webm
            raise RuntimeError("disk on fire")
        return real_show(self, time, frame)

    monkeypatch.setattr(transcode._Writer, "show", failing_show)
    report = run(src, dst, timeout_s=None)  # no deadline: one worker runs in this process, where the patch is
    assert report.done == ["a/v1.webm", "a/v2.webm"], report
    assert list(report.failed) == ["a/bad.webm"] and "disk on fire" in report.failed["a/bad.webm"], report.failed
    assert not (dst / "a/bad.mp4").exists() and parts_under(dst) == [], sorted(dst.rglob("*"))

    # Interrupted (Ctrl-C) in the middle of a file: no output, no part, the interrupt goes on.
    def interrupting_show(self, time, frame):
        raise KeyboardInterrupt

    monkeypatch.setattr(transcode._Writer, "show", interrupting_show)
    with pytest.raises(KeyboardInterrupt):
        prepare_video(src / "a/v1.webm", tmp_path / "one.mp4", short_side=48)
    assert not (tmp_path / "one.mp4").exists() and not part_path(tmp_path / "one.mp4").exists()


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                    reason="the crash is injected by patching the parent, which only fork carries over")
def test_a_crashing_worker_fails_only_its_file_and_leaves_no_part(tmp_path):
    src, dst = small_tree(tmp_path / "src", ("a/v1.webm", "a/crash.webm", "a/v2.webm", "a/v3.webm")), tmp_path / "dst"
    # the worker writes half of crash.webm's output, then dies as a segfaulting decoder would; the
    # patch reaches the workers only if they are forked from the patched process
    report = run_patched("prepare_tree", "transcode._transcode", "crash.webm", "crash", [src, dst],
                         dict(codec="h264", short_side=48, gop=8, workers=2, progress=False))
    assert report["done"] == ["a/v1.webm", "a/v2.webm", "a/v3.webm"], report
    assert report["failed"] == {"a/crash.webm": "unreadable: the decoder or encoder crashed the worker process"}
    assert not (dst / "a/crash.mp4").exists() and parts_under(dst) == [], sorted(dst.rglob("*"))


def test_unusable_sources_are_reported_and_the_rest_prepared(tmp_path, capsys):
    src, dst = small_tree(tmp_path / "src", ("good/ok.webm", "clash/x.webm")), tmp_path / "dst"
    (src / "bad").mkdir()
    (src / "bad" / "empty.mp4").touch()
    (src / "bad" / "text.mp4").write_text("hello, I am a text file\n" * 20)
    make_audio_only(src / "bad" / "sound.mp4")
    make_video(src / "clash" / "x.mp4", 12, codec="libx264")  # x.webm and x.mp4 both become x.mp4

    report = run(src, dst)
    assert report.done == ["clash/x.mp4", "good/ok.webm"], report
    reasons = report.failed
    assert sorted(reasons) == ["bad/empty.mp4", "bad/sound.mp4", "bad/text.mp4", "clash/x.webm"], reasons
    assert reasons["bad/empty.mp4"] == "zero bytes"
    assert reasons["bad/text.mp4"].startswith("not a video: PyAV cannot open it"), reasons
    assert reasons["bad/sound.mp4"] == "no video stream: audio streams only", reasons
    assert reasons["clash/x.webm"].startswith("name clash: clash/x.webm and clash/x.mp4"), reasons
    with open(dst / "prepare.failures.csv", newline="") as f:
        assert {r["path"]: r["reason"] for r in csv.DictReader(f)} == reasons
    made = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.mp4"))
    assert made == ["clash/x.mp4", "good/ok.mp4"], made
    out = capsys.readouterr()
    assert "2 prepared, 0 skipped (already done), 4 failed" in out.out and "prepare.failures.csv" in out.out
    assert "failed, zero bytes: 1" in out.err

    # A rerun tries the failures again and lists them again.
    report = run(src, dst)
    assert (report.done, report.skipped, sorted(report.failed)) == ([], ["clash/x.mp4", "good/ok.webm"],
                                                                    sorted(reasons)), report


def test_prepare_video_raises_video_error_for_unusable_source(tmp_path):
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(VideoError, match="^zero bytes$"):
        prepare_video(tmp_path / "empty.mp4", tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mp4"]


@pytest.mark.parametrize("kw, name", [
    ({"codec": "av1"}, "codec"), ({"gop": 0}, "gop"), ({"gop": -4}, "gop"), ({"gop": 2.5}, "gop"),
    ({"fps": 0}, "fps"), ({"fps": -25}, "fps"), ({"fps": "25"}, "fps"),
    ({"short_side": 0}, "short_side"), ({"short_side": -128}, "short_side"), ({"short_side": 127}, "short_side"),
    ({"workers": 0}, "workers"), ({"crf": 99}, "crf"),
])
def test_bad_arguments_name_the_argument(tmp_path, kw, name):
    src = small_tree(tmp_path / "src", ("a/v.webm",))
    with pytest.raises(ValueError, match=f"^{name} "):
        run(src, tmp_path / "dst", **kw)
    assert not (tmp_path / "dst").exists()
    if name != "workers":
        with pytest.raises(ValueError, match=f"^{name} "):
            prepare_video(src / "a/v.webm", tmp_path / "v.mp4", **{"short_side": 48, **kw})


def test_bad_folders_name_src_or_dst(tmp_path):
    with pytest.raises(ValueError, match="^src: .*missing: no such folder"):
        run(tmp_path / "missing", tmp_path / "dst")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="^src: .*no video files"):
        run(tmp_path / "empty", tmp_path / "dst")
    src = small_tree(tmp_path / "src", ("a/v.webm",))
    with pytest.raises(ValueError, match="^dst: .* is inside src"):
        run(src, src / "prepared")
    run(src, tmp_path / "dst", short_side=48)
    with pytest.raises(ValueError, match=r"^dst: .*other settings \(short_side: 48 there, 64 now\)"):
        run(src, tmp_path / "dst", short_side=64)


def test_check_settings_normalises_fps():
    assert check_settings("vp9", None, 16, 29.97)["fps"] == Fraction(2997, 100)
    assert check_settings("h264", 128, 16, None) == {"codec": "h264", "short_side": 128, "gop": 16, "fps": None,
                                                     "crf": transcode.DEFAULT_CRF["h264"]}
    assert output_path("/d", Path("a/b.avi"), "vp9") == Path("/d/a/b.webm")
    assert part_path("/d/a/b.mp4") == Path("/d/a/.b.part.mp4")


# ----------------------------------------------------------------------------------------------
# Real clips: H.264, XviD with packed B-frames, Cinepak with a lying header, audio, 1080p


def source_frames_at(path, indices, size):
    """{i: source frame i (decoder order) scaled to ``size`` the way prepare does, RGB float}."""
    wanted, found = set(indices), {}
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in wanted:
                found[i] = f.reformat(*size, "yuv420p", interpolation="BICUBIC").to_ndarray(
                    format="rgb24").astype(np.float32)
    return found


@pytest.fixture(scope="module")
def real_prepared(tmp_path_factory):
    if not REAL_CLIPS.is_dir():
        pytest.skip(f"real clips not found at {REAL_CLIPS}")
    root = tmp_path_factory.mktemp("real")
    src, dst = root / "src", root / "dst"
    (src / "clips").mkdir(parents=True)
    for path in sorted(REAL_CLIPS.iterdir()):
        if path.suffix != ".md":
            shutil.copyfile(path, src / "clips" / path.name)
    report = prepare_tree(src, dst, codec="h264", short_side=64, gop=16, workers=2, progress=False)
    return src, dst, report


@needs_real_clips
def test_real_clips_all_prepared(real_prepared):
    src, dst, report = real_prepared
    names = sorted(p.name for p in REAL_CLIPS.iterdir() if p.suffix != ".md")
    assert report.failed == {} and report.done == [f"clips/{n}" for n in names], report


@needs_real_clips
@pytest.mark.parametrize("name", sorted(p.name for p in REAL_CLIPS.iterdir() if p.suffix != ".md")
                         if REAL_CLIPS.is_dir() else [])
def test_real_clip_duration_timing_and_frames(real_prepared, name):
    src, dst, _ = real_prepared
    source, out = src / "clips" / name, output_path(dst, Path("clips", name), "h264")
    times, duration = decoded_timing(source)
    with av.open(str(source)) as c:
        stream = c.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate).limit_denominator(1001)  # its nominal rate
    flags, _, out_rate = output_packets(out)
    assert float(out_rate) == pytest.approx(float(rate), rel=1e-3), f"{name}: output at {out_rate} fps, want {rate}"
    n = len(flags)
    assert n == expected_count(duration, rate), f"{name}: {n} frames at {rate} fps for {float(duration):.3f} s"
    assert abs(n / rate - duration) <= 1 / rate, f"{name}: lasts {float(n / rate):.3f} s, source {float(duration):.3f} s"
    assert_keyframes_every(out, 16, n)
    probed = probe_video(out, "gpu")
    assert (probed["num_frames"], probed["vfr"]) == (n, False), f"{name}: {probed}"

    with av.open(str(out)) as c:
        ks = sorted({0, n // 5, n // 3, n // 2, 2 * n // 3, n - 1})
        got = {k: f.to_ndarray(format="rgb24").astype(np.float32)
               for k, f in enumerate(c.decode(video=0)) if k in ks}
    size = got[0].shape[1], got[0].shape[0]
    assert min(size) == 64, f"{name}: output size {size}"
    want = {k: shown_at(times, Fraction(k) / rate) for k in ks}
    # The frames around each expected one too, to tell the right one from its neighbours.
    refs = source_frames_at(source, {j + d for j in want.values() for d in (-1, 0, 1)}, size)
    for k, j in want.items():
        diffs = {i: float(np.abs(got[k] - refs[i]).mean()) for i in (j - 1, j, j + 1) if i in refs}
        assert diffs[j] < 8, f"{name}: output frame {k} vs source frame {j}: mean abs diff {diffs[j]:.2f} ({diffs})"
        assert diffs[j] <= min(diffs.values()) + 0.5, \
            f"{name}: output frame {k} should show source frame {j}, but a neighbour matches better: {diffs}"


@needs_real_clips
def test_real_clip_vp9_tree_avi(tmp_path):
    # The lying header: 68 frames over 29.6 s, the header says 444; VP9 at 15 fps = 444 frames.
    shutil.copyfile(REAL_CLIPS / "tree.avi", tmp_path / "tree.avi")
    info = prepare_video(tmp_path / "tree.avi", tmp_path / "tree.webm", "vp9", short_side=64, gop=25)
    assert (info["frames"], info["fps"], info["source_frames"]) == (444, 15, 68), info
    assert info["duration"] == pytest.approx(29.6, abs=1e-3), info
    assert_keyframes_every(tmp_path / "tree.webm", 25, 444)
    probed = probe_video(tmp_path / "tree.webm", "cpu")
    assert (probed["num_frames"], probed["vfr"], probed["duration"]) == (444, False, pytest.approx(29.6, abs=2e-3)), probed  # WebM: ms
