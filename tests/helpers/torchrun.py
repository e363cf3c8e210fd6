"""Run a command under real ``torchrun`` agents on this machine, as N "nodes" would run it.

``run_agents(nodes, nproc, args, log_dir)`` starts ``nodes`` torchrun agents at once, each with
``nproc`` workers running ``python -m tests.helpers.torchrun_worker ARGS`` (``timeclr.train``,
guarded), meeting through the c10d rendezvous on a free localhost port, and waits for all of
them. A hang fails the test, never the suite, in three layers:
- each worker's watchdog prints its stacks and exits ``watchdog`` seconds in; the agents then see
  a failed worker and end the job;
- at the deadline every process of the job is SIGKILLed: the agents, and the workers, which
  torchrun starts in sessions of their own (out of reach of a kill of the agent's group), found by
  walking /proc from the agents down;
- agents and workers die with their parent (the kernel's parent-death signal), so even a test
  process killed outright leaves nothing running.
"""
import os
import signal
import subprocess
import sys
import time

from tests.helpers.spawn import die_with_parent, free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STARTUP_DEADLINE_S = 240  # a job's start, on a loaded 2-core machine, until its worker stops on purpose


def proc_stat(pid) -> list[str] | None:
    """The fields of /proc/PID/stat after the process name (state, ppid, ...), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
    except OSError:
        return None


def running(pid) -> bool:
    """Whether ``pid`` still runs: it exists and is not a zombie (an unreaped zombie runs nothing)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren, ...), from /proc's parent links."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := proc_stat(entry)):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_agents(nodes: int, nproc: int, args: list, log_dir, max_restarts: int = 0, env=None,
               deadline_s: int = 240, deadline_from=None) -> list[int]:
    """Exit codes of the ``nodes`` agents (-9 for one killed at the deadline); their output goes to
    ``log_dir/agentK.log``, and a line saying so ends the last log when the deadline struck.

    The deadline counts from the start, or, with ``deadline_from`` (a file a worker writes when it
    stops on purpose), from the moment that file appears: a test of the deadline itself then waits
    ``deadline_s`` past the hang, not past a start-up sized for a loaded machine (which still
    bounds the wait for the file, at ``STARTUP_DEADLINE_S``)."""
    port = free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={nproc}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=timeclr-test-{port}",
           f"--max-restarts={max_restarts}", "--monitor-interval=0.5", "-m", "tests.helpers.torchrun_worker", *args]
    # a fresh TCPStore per attempt: the agent's shared one keeps the old attempt's rank addresses
    # (pytorch/pytorch#135712), which docs/scaling.md's torchrun line also sets
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
           "TIMECLR_TEST_WATCHDOG_S": str(max(30, deadline_s - 60)), **(env or {})}
    agents = []
    for k in range(nodes):
        log = open(os.path.join(log_dir, f"agent{k}.log"), "w")
        agents.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=die_with_parent), log))
    end = time.monotonic() + (STARTUP_DEADLINE_S if deadline_from else deadline_s)
    try:
        if deadline_from:
            while not os.path.exists(deadline_from) and time.monotonic() < end \
                    and any(proc.poll() is None for proc, _ in agents):
                time.sleep(0.1)
            if os.path.exists(deadline_from):
                end = time.monotonic() + deadline_s
        for proc, _ in agents:
            proc.wait(timeout=max(1, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        # workers first, while their agents still link to them
        stuck = [pid for proc, _ in agents if proc.poll() is None for pid in descendants(proc.pid)]
        stuck += [proc.pid for proc, _ in agents if proc.poll() is None]
        for pid in stuck:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc, log in agents:
            proc.wait()
            log.close()
        # SIGKILL is delivered, not done: an orphaned worker can take a moment to exit (and be
        # reaped by init), and the caller is promised that nothing is left running
        gone_by = time.monotonic() + 10
        while time.monotonic() < gone_by and any(map(running, stuck)):
            time.sleep(0.05)
        if stuck:
            with open(os.path.join(log_dir, f"agent{nodes - 1}.log"), "a") as log:
                log.write(f"\nrun_agents: deadline of {deadline_s} s: SIGKILLed pids {stuck}\n")
    return [proc.returncode for proc, _ in agents]


def logs(log_dir, nodes: int) -> str:
    return "\n".join(open(os.path.join(log_dir, f"agent{k}.log")).read()[-3000:] for k in range(nodes))


def run_ranks(world: int, args: list, log_dir, env=None, deadline_s: int = 150) -> list[int]:
    """Exit codes of ``world`` ranks of ``python -m tests.helpers.torchrun_worker ARGS`` started
    without torchrun (the environment it would set, MASTER_ADDR on this machine): nothing restarts
    or ends the job for a failed rank, so what ends it is the ranks' own handling. Rank 0's exit is
    waited for up to ``deadline_s``; then every rank still running is SIGKILLed (-9 for those).
    Each rank's output goes to ``log_dir/rankK.log``."""
    base = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
            "TIMECLR_TEST_WATCHDOG_S": str(deadline_s + 30), **(env or {})}
    ranks = []
    for rank in range(world):
        log = open(os.path.join(log_dir, f"rank{rank}.log"), "w")
        ranks.append((subprocess.Popen([sys.executable, "-m", "tests.helpers.torchrun_worker", *args], cwd=REPO,
                                       env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}, stdout=log,
                                       stderr=subprocess.STDOUT, preexec_fn=die_with_parent), log))
    try:
        ranks[0][0].wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc, log in ranks:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.close()
    return [proc.returncode for proc, _ in ranks]
