"""Test set-up. Without a usable CUDA device, Triton kernels run in Triton's CPU interpreter, which
must be switched on before triton is first imported, so it happens here, before any test module
loads. "Usable" is what torch says (a driver node alone, as in a container without a GPU, is not
enough); importing torch does not import triton."""
import faulthandler
import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Training picks its CPU threads from the cores other processes leave free (timeclr/training/threads.py),
# so on a busy machine a run and its resumed twin could compute with different thread counts and
# part by more than float noise; the tests compare such twins, so every run here keeps torch's
# count (tests/test_run.py checks the choice itself, with the variable removed).
# Under pytest-xdist the workers split the cores between them: more threads than cores makes
# OpenMP's spinning threads steal each other's time.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, torch.get_num_threads() // _workers))
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


def pytest_collection_modifyitems(config, items):
    """Heavy tests first (a stable sort keeps the rest in order): under ``pytest -n 2`` the long
    multi-process jobs then overlap the many short tests, instead of one of them ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
