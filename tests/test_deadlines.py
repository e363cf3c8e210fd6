"""Per-file deadlines (timeclr.pipelines.ingest.pool.run_per_file, and through it ``index`` and ``prepare``):
a file whose task hangs is killed at its deadline and fails alone as ``timed out``, a crash fails
its file alone, a task that raises is a bug, and no worker outlives the call or its caller."""
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from timeclr.pipelines.storage.manifest import sidecar_paths
from timeclr.pipelines.ingest.pool import run_per_file
from timeclr.pipelines.ingest.transcode import part_path
from tests.helpers import pool_tasks
from tests.helpers.fresh_fork import run_patched
from tests.helpers.videos import make_video

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("waits")  # mostly waiting out deadlines (tests/conftest.py)
SLACK_S = 20  # a bound on a hang, not a speed test: a loaded machine may be slow to start processes


def failed(key, why):
    return "failed", why


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def assert_no_workers(pids):
    assert not [p for p in multiprocessing.active_children() if p.name == "run_per_file worker"]
    assert not [pid for pid in pids if alive(pid)], "a worker outlived run_per_file"


@pytest.mark.parametrize("workers", [2, 1])  # one worker runs in a process too when there is a deadline
def test_a_hanging_file_times_out_alone(tmp_path, workers):
    pid_file = tmp_path / "hang.pid"
    jobs = {"a": ("ok", 1), "hang": ("hang", None, pid_file), "b": ("ok", 2), "c": ("ok", 3)}
    deadline = 1.5
    start = time.monotonic()
    out = run_per_file(pool_tasks.task, jobs, workers, "t", failed, progress=False, timeout_s=deadline)
    elapsed = time.monotonic() - start
    assert out["hang"] == ("failed", "timed out")
    assert {k: v for k, (v, _) in out.items() if k != "hang"} == {"a": 1, "b": 2, "c": 3}
    assert deadline <= elapsed < deadline + SLACK_S
    assert_no_workers([pid for k, (_, pid) in out.items() if k != "hang"] + [int(pid_file.read_text())])


def test_a_crash_fails_only_its_file_and_its_worker_is_replaced():
    jobs = {"a": ("ok", 1), "crash": ("crash", None), "b": ("ok", 2), "c": ("ok", 3), "d": ("ok", 4)}
    out = run_per_file(pool_tasks.task, jobs, 2, "t", failed, progress=False, timeout_s=None)
    assert out.pop("crash") == ("failed", "crashed")
    assert {k: v for k, (v, _) in out.items()} == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert_no_workers([pid for _, pid in out.values()])


def test_a_task_that_raises_is_a_bug_not_a_bad_file(tmp_path):
    # b raises once a has started (else, on a loaded machine, a could be torn down before it wrote its pid)
    jobs = {"a": ("slow", 0.2, tmp_path / "a.pid"), "b/bug.mp4": ("raise_after", (str(tmp_path / "a.pid"), "b/bug.mp4"))}
    with pytest.raises(RuntimeError, match=r"probing: the task raised on b/bug\.mp4") as raised:
        run_per_file(pool_tasks.task, jobs, 2, "probing", failed, progress=False, timeout_s=60)
    assert "ValueError: a bug meets b/bug.mp4" in str(raised.value)  # the worker's traceback
    assert_no_workers([int((tmp_path / "a.pid").read_text())])  # the other worker was killed too


KILLED_PARENT = """
import sys
from tests.helpers import pool_tasks
from timeclr.pipelines.ingest.pool import run_per_file
run_per_file(pool_tasks.task, {"a": ("slow", 1.0, sys.argv[1])}, 1, "t", None, progress=False, timeout_s=60)
"""


def test_a_worker_exits_when_its_caller_is_killed(tmp_path):
    """SIGKILL leaves the caller no ``finally``: its worker finishes its file, finds no caller and exits."""
    pid_file = tmp_path / "a.pid"
    caller = subprocess.Popen([sys.executable, "-c", KILLED_PARENT, str(pid_file)], cwd=REPO)
    try:
        start = time.monotonic()
        while not pid_file.exists() or not pid_file.read_text():
            assert caller.poll() is None and time.monotonic() - start < SLACK_S, "the worker never started"
            time.sleep(0.05)
    finally:
        caller.kill()
        caller.wait()
    worker = int(pid_file.read_text())
    while alive(worker) and time.monotonic() - start < 2 * SLACK_S:
        time.sleep(0.05)
    assert not alive(worker), "the worker outlived its killed caller"


# End to end: the hang is injected by patching the decoder in a fresh process
# (tests/helpers/fresh_fork.py), which reaches the workers only if they are forked from it.
fork_only = pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                               reason="the hang is injected by patching the parent, which only fork carries over")


@fork_only
def test_index_rejects_a_file_whose_probe_hangs_and_completes(tmp_path):
    root = tmp_path / "videos"
    for rel in ("a/v1.webm", "a/hang.webm", "b/v2.webm", "b/v3.webm"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        make_video(root / rel, 6)
    start = time.monotonic()
    assert run_patched("index_tree", "index.probe_video", "hang.webm", "hang", [root, tmp_path / "m.csv"],
                       dict(device="cpu", workers=2, progress=False, timeout_s=2)) == [3, 1]
    assert time.monotonic() - start < 2 + SLACK_S
    rows = (tmp_path / "m.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == ["a/v1.webm", "b/v2.webm", "b/v3.webm"]
    rejects = sidecar_paths(tmp_path / "m.csv")[1].read_text().splitlines()[1:]
    assert rejects == ["a/hang.webm,timed out: the probe took longer than 2 s "
                       "(a decoder that hangs on this file?)"]


@fork_only
def test_prepare_fails_a_file_that_hangs_leaves_no_part_and_completes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for rel in ("a/v1.webm", "a/hang.webm", "a/v2.webm"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        make_video(src / rel, 6)
    report = run_patched("prepare_tree", "transcode._transcode", "hang.webm", "hang", [src, dst],
                         dict(codec="vp9", workers=2, progress=False, timeout_s=2))
    assert report["done"] == ["a/v1.webm", "a/v2.webm"], report
    assert report["failed"] == {"a/hang.webm": "timed out: preparing took longer than 2 s "
                                               "(a decoder or encoder that hangs on this file?)"}
    assert not (dst / "a/hang.webm").exists() and not part_path(dst / "a/hang.webm").exists()
    assert "a/hang.webm,timed out: " in (dst / "prepare.failures.csv").read_text()
