"""Test set-up. Without a usable CUDA device, Triton kernels run in Triton's CPU interpreter, which
must be switched on before triton is first imported, so it happens here, before any test module
loads. "Usable" is what torch says (a driver node alone, as in a container without a GPU, is not
enough); importing torch does not import triton."""
import faulthandler
import os
import sys

# Under pytest-xdist (the README's command: 2 workers) each worker keeps every core's thread, so
# one computes at full speed while the other waits out a deadline; when both compute, OpenMP's
# idle threads must sleep rather than spin, or they take the cores the other worker needs. Read
# when torch loads OpenMP, so set before the import (measured: 172 s and 154 s against 175-194 s
# with one thread per worker, at 2 workers on 2 cores).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Training picks its CPU threads from the cores other processes leave free (timeclr/training/threads.py),
# so on a busy machine a run and its resumed twin could compute with different thread counts and
# part by more than float noise; the tests compare such twins, so every run here keeps torch's
# count (tests/test_run.py checks the choice itself, with the variable removed).
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="session")
def _in_repo_root():
    """Tests name configs as users type them (``pipelines/debug.yaml``), from the repository root;
    so the suite runs from whatever folder pytest is started in. Session-wide, so module-scoped
    fixtures that train a model run there too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        yield


# pytest-timeout (pytest.ini) fails a slow test with SIGALRM, whose Python handler runs only when
# the main thread is back in Python: a test stuck in native code never lets it. faulthandler's
# watchdog is a C thread: a minute after pytest-timeout's limit it prints every thread's stack and
# ends the process, so CI gets an answer, not its limit.
_WATCHDOG_S = 660


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(_WATCHDOG_S, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy: runs several processes or a long compile; scheduled first")
    # The README's command runs the suite on 2 workers (pytest-xdist, --dist loadgroup). The tests
    # of deadlines and hung jobs spend most of their time asleep; grouped, they run one after
    # another on one worker while the other worker computes, instead of two of them at once
    # leaving the machine idle. Without xdist the mark is inert.
    config.addinivalue_line("markers", "xdist_group(name): tests that run on one pytest-xdist worker")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Heavy tests first (a stable sort keeps the rest in order): under ``pytest -n 2`` the long
    multi-process jobs then overlap the many short tests, instead of one of them ending the run
    alone. Every module not in a named group is a group of its own, so that under ``--dist
    loadgroup`` its tests run on one worker and its module-scoped fixtures (prepared sets, shared
    training jobs) are built once, not once per worker."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
