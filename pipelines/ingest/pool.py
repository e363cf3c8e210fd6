"""A process pool for one task per file, where one file may crash or hang its worker.

Probing (``timeclr.pipelines.ingest.index``) and preparing (``timeclr.pipelines.ingest.prepare``) hand every
file of a tree to FFmpeg, and a damaged file can crash a decoder (a segfault, not an exception)
or hang it. Either must fail that file alone, not the run or the other files in flight with it.

Design: ``workers`` processes, each holding one task at a time, sent over its own Pipe. The
parent waits on the pipes (``multiprocessing.connection.wait``) until the earliest deadline. A
worker whose pipe ends (EOF) has died: its file alone fails as "crashed". A worker past its
file's deadline is killed (SIGKILL): its file fails as "timed out". Either is replaced by a fresh
worker when there is more to do. The parent kills the workers left when it returns or raises
(Ctrl-C included); a worker whose parent was killed outright sees EOF on its pipe when its file
is done and exits, or, if the file hangs, is ended by its own alarm a minute after the deadline.
"""
import math
import multiprocessing
import signal
import time
import traceback
from multiprocessing.connection import wait

from tqdm import tqdm

# Workers come from a fork server (a fresh interpreter that forks them), never by forking the
# caller: a caller with threads (DALI's, torch's, a test runner's) forked mid-lock leaves a child
# that waits forever on a lock no thread will release.
WORKERS = multiprocessing.get_context("forkserver")
# The fork server imports the tasks' modules (PyAV, NumPy; it stays single-threaded, no torch)
# once, so that a worker starts with them: one worker costs a run ~10 ms instead of ~170 ms.
WORKERS.set_forkserver_preload(["__main__", "timeclr.pipelines.ingest.index", "timeclr.pipelines.ingest.prepare"])


def run_per_file(task, jobs: dict, workers: int, desc: str, on_failure, progress: bool = True,
                 timeout_s: float | None = None) -> dict:
    """``{key: task(*args)}`` for every ``key: args`` of ``jobs``, in ``workers`` processes, with a
    tqdm bar. ``task`` must not raise: it returns an outcome.

    A file whose worker dies gets ``on_failure(key, "crashed")`` as its outcome, one still running
    ``timeout_s`` seconds after it was handed out ``on_failure(key, "timed out")``; the other
    files get their own. A task that raises is a bug: RuntimeError naming the key, with the
    worker's traceback. With ``timeout_s`` None and ``workers <= 1``, the tasks run in this
    process (nothing can stop a hang there; nor is there a process start to pay).
    """
    outcomes = {}
    with tqdm(total=len(jobs), desc=desc, unit="video", disable=not progress) as bar:
        if timeout_s is None and workers <= 1:
            for key, args in jobs.items():
                outcomes[key] = task(*args)
                bar.update()
            return outcomes
        todo = list(jobs.items())[::-1]
        live, idle, busy = {}, [], {}  # conn -> its worker; idle conns; conn -> (key, deadline)
        try:
            while todo or busy:
                while todo and len(busy) < workers:
                    conn = idle.pop() if idle else _start_worker(live)
                    key, args = todo.pop()
                    conn.send((task, args, timeout_s))
                    busy[conn] = key, time.monotonic() + (math.inf if timeout_s is None else timeout_s)
                earliest = min(deadline for _, deadline in busy.values())
                wait_s = None if earliest == math.inf else max(0.0, earliest - time.monotonic())
                for conn in wait(list(busy), wait_s):
                    key, _ = busy.pop(conn)
                    try:
                        status, value = conn.recv()
                    except (EOFError, ConnectionResetError):  # the worker died: a decoder's segfault, say
                        _stop(conn, live.pop(conn))
                        outcomes[key] = on_failure(key, "crashed")
                    else:
                        if status == "raised":
                            raise RuntimeError(f"{desc}: the task raised on {key} (a bug, not a bad file):"
                                               f"\n{value}")
                        outcomes[key] = value
                        idle.append(conn)
                    bar.update()
                now = time.monotonic()
                for conn, (key, deadline) in list(busy.items()):
                    if deadline <= now:
                        del busy[conn]
                        _stop(conn, live.pop(conn))
                        outcomes[key] = on_failure(key, "timed out")
                        bar.update()
        finally:  # done, a bug or Ctrl-C: no worker outlives the call
            for conn, process in live.items():
                _stop(conn, process)
    return outcomes


def _start_worker(live: dict):
    """Start a worker, add it to ``live`` and return the parent's end of its pipe."""
    conn, child_conn = WORKERS.Pipe()
    process = WORKERS.Process(target=_serve, args=(child_conn,), name="run_per_file worker")
    process.start()
    live[conn] = process
    child_conn.close()  # the worker's end lives in the worker only: its death is EOF here
    return conn


def _stop(conn, process):
    process.kill()
    process.join()
    conn.close()


def _serve(conn):
    """A worker: run one ``(task, args, timeout_s)`` at a time until its pipe ends (the parent is
    done or gone). Ctrl-C is the parent's to handle. The alarm (SIGALRM's default action ends the
    process, even in native code) only matters if the parent, which kills at the deadline, is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    while True:
        try:
            task, args, timeout_s = conn.recv()
        except EOFError:
            return
        signal.setitimer(signal.ITIMER_REAL, 0 if timeout_s is None else timeout_s + 60)
        try:
            reply = "ok", task(*args)
        except Exception:
            reply = "raised", traceback.format_exc()
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            conn.send(reply)
        except OSError:  # the parent is gone
            return
        except Exception:  # an outcome that does not pickle: a bug too
            conn.send(("raised", traceback.format_exc()))
