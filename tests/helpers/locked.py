"""A task that takes a module-level lock: a worker forked while another thread of its parent held
that lock waits forever; one started fresh (the pool's fork server) does not."""
import threading

LOCK = threading.Lock()


def task(x):
    with LOCK:
        return x * 2
