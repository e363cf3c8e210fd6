"""Start worker processes with a deadline, so a stuck rank fails its test instead of hanging CI."""
import os
import socket
import time

import pytest
import torch.multiprocessing as mp


def spawn_with_deadline(fn, args, nprocs, deadline_s=300):
    """``mp.spawn(fn, args, nprocs)``, but kill the workers and fail after ``deadline_s`` seconds.

    A worker's exception is re-raised here, as mp.spawn does.
    """
    ctx = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    t_end = time.monotonic() + deadline_s
    try:
        while not ctx.join(timeout=5):
            if time.monotonic() > t_end:
                alive = [p.pid for p in ctx.processes if p.is_alive()]
                pytest.fail(f"{fn.__name__}: workers still running after {deadline_s} s (alive pids {alive})")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world: int, port: int):
    """Set the environment torchrun gives rank ``rank`` of ``world`` on this machine."""
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
