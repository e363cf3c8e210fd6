"""Start worker processes with a deadline, so a stuck rank fails its test instead of hanging CI.

Three layers, because a rank stuck in native code (a gloo collective, a decoder's thread pool,
interpreter teardown) answers neither Python signals nor Python threads:
- each worker asks the kernel to SIGKILL it when its parent dies (torch's own ``mp.spawn`` asks
  for SIGINT, which a process stuck in C never handles; an orphan then keeps CI's output pipe
  open until CI's limit);
- each worker's C-level faulthandler watchdog prints every thread's stack and exits shortly
  before the deadline, so the log says where it was stuck;
- the parent SIGKILLs what is left at the deadline and fails the test.
"""
import ctypes
import faulthandler
import os
import signal
import socket
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Ask the kernel to SIGKILL this process when its parent (thread) exits (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _guarded(rank, fn, watchdog_at, args):
    die_with_parent()
    # the watchdog runs in its own C thread: it needs no GIL and fires wherever the rank is stuck.
    # It fires at the wall-clock time the parent fixed, not a delay from here: a start-up slowed by
    # a loaded machine (seconds to import torch) once pushed it past the parent's kill, and no
    # stack was printed
    faulthandler.dump_traceback_later(max(1.0, watchdog_at - time.time()), exit=True, file=sys.stderr)
    # 2 ranks on a 2-core machine: one intra-op thread each, or their spinning pools starve each other
    torch.set_num_threads(1)
    try:
        fn(rank, *args)
    finally:
        faulthandler.cancel_dump_traceback_later()


def spawn_with_deadline(fn, args, nprocs, deadline_s=300):
    """``mp.spawn(fn, args, nprocs)``, but kill the workers and fail after ``deadline_s`` seconds.

    A worker's exception is re-raised here, as mp.spawn does. ``fn`` must be importable by name
    (a module-level function), as for mp.spawn.
    """
    watchdog_at = time.time() + max(deadline_s - 20, deadline_s * 0.8)  # wall clock: the workers read it too
    ctx = mp.start_processes(_guarded, args=(fn, watchdog_at, args), nprocs=nprocs, join=False,
                             start_method="spawn")
    t_end = time.monotonic() + deadline_s
    try:
        while not ctx.join(timeout=5, grace_period=10):
            if time.monotonic() > t_end:
                alive = [p.pid for p in ctx.processes if p.is_alive()]
                pytest.fail(f"{fn.__name__}: workers still running after {deadline_s} s (alive pids {alive})")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join(timeout=10)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world: int, port: int):
    """Set the environment torchrun gives rank ``rank`` of ``world`` on this machine."""
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
