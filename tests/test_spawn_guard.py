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


def _stuck_in_c_holding_the_gil(rank):
    # like a C loop that retries on EINTR: SIGINT / SIGTERM never reach Python's handlers, and
    # PyDLL keeps the GIL, so no Python thread runs either
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
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
spawn_with_deadline(_stuck_in_c_holding_the_gil, (), nprocs=1, deadline_s=600)
"""


def test_a_worker_dies_with_its_parent(tmp_path):
    """A parent killed outright (CI's timeout, pytest-timeout's exit) leaves no worker behind to
    hold the output pipe open."""
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        deadline = time.monotonic() + 60
        children = []
        while time.monotonic() < deadline and not children:
            time.sleep(0.5)
            out = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout
            children = [int(pid) for pid in out.split()]
        assert children, "the worker never started"
        time.sleep(3)  # past the worker's start-up, into the stuck call
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        time.sleep(2)
        alive = [pid for pid in children if os.path.exists(f"/proc/{pid}") and
                 open(f"/proc/{pid}/stat").read().split()[2] != "Z"]
        assert not alive, f"workers {alive} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
