"""Per-file tasks that misbehave, for ``timeclr.pipelines.ingest.pool``'s tests: module-level, so the
pool's worker processes (started by a fork server, not forked from the test) can import them."""
import os
import signal
import time


def task(kind: str, value, pid_file=None):
    """As a decoder might do with a file of this ``kind``: 'ok' returns ``(value, pid)``, 'slow'
    too after ``value`` seconds, 'hang' never returns, 'crash' kills its process, 'raise' raises
    (a bug), 'raise_after' raises once the file ``value[0]`` holds something (another task's pid),
    naming ``value[1]``. Writes its pid to ``pid_file`` first, if given."""
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
    if kind == "hang":
        time.sleep(3600)
    elif kind == "slow":
        time.sleep(value)
    elif kind == "crash":
        os.kill(os.getpid(), signal.SIGKILL)  # dies by a signal as a segfault would, without a core file
    elif kind == "raise":
        raise ValueError(f"a bug meets {value}")
    elif kind == "raise_after":
        start = time.monotonic()
        while not (os.path.exists(value[0]) and os.path.getsize(value[0])) and time.monotonic() - start < 20:
            time.sleep(0.02)
        raise ValueError(f"a bug meets {value[1]}")
    return value, os.getpid()
