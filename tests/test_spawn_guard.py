"""The multi-process tests' guard: a rank stuck in native code, holding the GIL, still ends its
test within the deadline with a failure, and dies with its parent."""
import ctypes
import os
import signal
import subprocess
import sys
import time

import pytest
from torch.multiprocessing.spawn import ProcessExitedException

from tests.helpers.spawn import spawn_with_deadline

# several processes, mostly waiting out deadlines: scheduled first, on one worker under xdist
pytestmark = [pytest.mark.heavy, pytest.mark.xdist_group("waits")]


def _stuck_in_c_holding_the_gil(rank, started=None):
    # like a C loop that retries on EINTR: SIGINT / SIGTERM never reach Python's handlers, and
    # PyDLL keeps the GIL, so no Python thread runs either. ``started``: a file made just before
    # (the guard has set up the rank by then)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    if started:
        open(started, "w").close()
    ctypes.PyDLL(None).sleep(1000)


def test_a_rank_stuck_in_native_code_fails_within_the_deadline(capfd):
    t0 = time.monotonic()
    with pytest.raises((ProcessExitedException, pytest.fail.Exception)):
        spawn_with_deadline(_stuck_in_c_holding_the_gil, (), nprocs=2, deadline_s=8)
    took = time.monotonic() - t0
    assert took < 60, f"the guard took {took:.0f} s for an 8 s deadline"
    assert "_stuck_in_c_holding_the_gil" in capfd.readouterr().err, "the watchdog should print the stuck stack"


ORPHAN = """
import sys, time
from tests.helpers.spawn import spawn_with_deadline
from tests.test_spawn_guard import _stuck_in_c_holding_the_gil
spawn_with_deadline(_stuck_in_c_holding_the_gil, (sys.argv[1],), nprocs=1, deadline_s=600)
"""


def test_a_worker_dies_with_its_parent(tmp_path):
    """A parent killed outright (CI's timeout, pytest-timeout's exit) leaves no worker behind to
    hold the output pipe open."""
    started = tmp_path / "started"
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN, str(started)],
                              cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        # until the worker is in the stuck call (past its start-up, which takes seconds on a loaded
        # machine: killing the parent before the guard ran tested nothing and left the worker behind)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not started.exists():
            time.sleep(0.2)
        assert started.exists(), "the worker never reached the stuck call"
        out = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout
        children = [int(pid) for pid in out.split()]
        assert children, "the worker is no child of the parent"
        parent.send_signal(signal.SIGKILL)
        parent.wait()

        def alive():
            return [pid for pid in children if os.path.exists(f"/proc/{pid}") and
                    open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
        gone_by = time.monotonic() + 10  # the worker itself would sleep 1000 s
        while alive() and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert not alive(), f"workers {alive()} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
