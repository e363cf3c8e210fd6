"""One job per output folder: ``prepare``, ``shard`` and training runs refuse to share one.

Two jobs writing one folder would interleave their outputs (two ``prepare`` runs claiming the same
videos, two trainings overwriting each other's checkpoints). So a job takes ``FOLDER/.timeclr.lock``
first: the file is created with ``O_EXCL`` (only one creator wins, on local and NFS v3+ file
systems) and holds who took it (host, PID, command, time).

A lock whose holder is gone is stale and taken over, with a note: on this host, a PID that no
longer runs (or that is this very process: a job that failed earlier in the same interpreter, as in
a notebook or a test session). A lock taken on another host cannot be checked from here; the error
says which host and PID, so the user can remove the file once that job is known to be dead.

Leaf module: imports nothing of ours but ``errors``.
"""
import json
import os
import socket
import sys
import time

from timeclr.errors import ConfigError

LOCK_NAME = ".timeclr.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (signal 0 checks without sending anything):
    the one check, for a lock's holder and for the process a synthetic dataset's partial folder names."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        return True
    return True


class FolderLock:
    """``with FolderLock(folder, "prepare"):`` holds ``folder``'s lock for the block (see the
    module docstring); ``acquire()`` / ``release()`` for a lock that spans more than one block.

    Raises:
        ConfigError: the folder is in use by a live job (named in the message).
    """

    def __init__(self, folder, what: str):
        self.folder, self.what = str(folder), what
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.held = False

    def _holder(self) -> dict:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):  # being written this instant, or damaged: treat as unknown
            return {}

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        return isinstance(pid, int) and (pid == os.getpid() or not pid_alive(pid))

    def acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "what": self.what,
              "command": " ".join(sys.argv)[:300], "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):  # a stale lock removed by another job meanwhile: try again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if not self._stale(holder):
                    who = (f"{holder.get('what', 'a job')} (PID {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                           f"since {holder.get('since', '?')}: {holder.get('command', '')})") if holder else "another job"
                    raise ConfigError(f"{self.folder} is in use by {who}; wait for it to finish, or remove "
                                      f"{self.path} if that job is gone") from None
                if holder.get("pid") != os.getpid():
                    print(f"note: {self.path} was left by PID {holder.get('pid')}, which is gone: taking it over",
                          file=sys.stderr)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise ConfigError(f"{self.path}: could not take the lock (another job keeps taking it)")

    def release(self):
        if self.held:
            self.held = False
            if self._holder().get("pid") == os.getpid():
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
