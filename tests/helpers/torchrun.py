"""Run a command under real ``torchrun`` agents on this machine, as N "nodes" would run it.

``run_agents(nodes, nproc, entry, args)`` starts ``nodes`` torchrun agents at once, each with
``nproc`` workers, meeting through the c10d rendezvous on a free localhost port, and waits for
all of them; every agent is its own process group, killed whole at the deadline, so a hang fails
the test instead of the suite. ``python -m tests.helpers.torchrun_die_once`` is the entry that
SIGKILLs rank 0 right after a given checkpoint on the first attempt (``--max-restarts`` brings it back).
"""
import os
import signal
import subprocess
import sys
import time

from tests.helpers.spawn import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_agents(nodes: int, nproc: int, entry: list, args: list, log_dir, max_restarts: int = 0, env=None,
               deadline_s: int = 300) -> list[int]:
    """Exit codes of the ``nodes`` agents; their output goes to ``log_dir/agentK.log``."""
    port = free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={nproc}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=timeclr-test-{port}",
           f"--max-restarts={max_restarts}", "--monitor-interval=0.5", *entry, *args]
    # a fresh TCPStore per attempt: the agent's shared one keeps the old attempt's rank addresses
    # (pytorch/pytorch#135712), which the README's torchrun line also sets
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
           **(env or {})}
    agents = []
    for k in range(nodes):
        log = open(os.path.join(log_dir, f"agent{k}.log"), "w")
        agents.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True), log))
    end = time.monotonic() + deadline_s
    try:
        for proc, _ in agents:
            proc.wait(timeout=max(1, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc, log in agents:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
    return [proc.returncode for proc, _ in agents]


def logs(log_dir, nodes: int) -> str:
    return "\n".join(open(os.path.join(log_dir, f"agent{k}.log")).read()[-3000:] for k in range(nodes))
