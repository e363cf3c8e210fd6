"""One job per output folder (issue #18): a second prepare, shard or training run into a folder
in use refuses with the holder's PID; a lock whose holder is gone is taken over."""
import json
import os
import subprocess
import sys
import time

import pytest

from timeclr.data import main as data_main
from timeclr.files.lock import LOCK_NAME, FolderLock
from timeclr.train import main as train_main
from tests.helpers.runs import moving_bars_manifest
from tests.test_train import overrides

HOLD = """
import sys, time
from timeclr.files.lock import FolderLock
with FolderLock(sys.argv[1], "holder"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of ``tmp_path / 'out'``."""
    folder = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))})
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return moving_bars_manifest(tmp_path_factory.mktemp("bars"))


def test_every_writer_refuses_a_folder_a_live_job_holds_and_takes_it_once_the_job_is_gone(holder, manifest, tmp_path):
    folder, proc = holder
    src = os.path.join(os.path.dirname(manifest), "tree")
    attempts = {
        "prepare": lambda: data_main(["prepare", src, str(folder), "--codec", "jpeg", "--workers", "1"]),
        "shard": lambda: data_main(["shard", manifest, str(folder)]),
        "train": lambda: train_main(["pipelines/debug.yaml", *overrides(manifest, folder, "train.epochs=1")]),
    }
    for name, attempt in attempts.items():
        with pytest.raises(SystemExit) as e:
            attempt()
        message = str(e.value)
        assert f"is in use by holder (PID {proc.pid}" in message and LOCK_NAME in message, (name, message)
        assert "\n" not in message.strip(), (name, message)
    proc.kill()
    proc.wait()  # gone: its lock file is left behind, stale
    assert (folder / LOCK_NAME).exists()
    train_main(["pipelines/debug.yaml", *overrides(manifest, folder, "train.epochs=1")])
    assert not (folder / LOCK_NAME).exists(), "released at the end of the run"
    assert (folder / "checkpoint.pt").exists()


def test_a_lock_left_by_a_dead_pid_is_taken_over_with_a_note_and_released(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid, "what": "prepare"}))
    with FolderLock(folder, "test"):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"left by PID {dead.pid}, which is gone" in capsys.readouterr().err
    assert not (folder / LOCK_NAME).exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"host": "elsewhere", "pid": 1, "what": "training",
                                                "since": time.strftime("%Y")}))
    with pytest.raises(Exception, match="in use by training \\(PID 1 on elsewhere"):
        FolderLock(folder, "test").acquire()
