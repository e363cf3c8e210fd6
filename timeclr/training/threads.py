"""How many threads torch computes with on a CPU, chosen from the cores other processes leave free.

torch sizes its intra-op pool to every core the process may use. On a shared machine the cores
another job keeps busy are not free, and a pool that counts them spins against that job: measured
on a 2-core VM with one busy process beside the training step (``benchmarks/thread_contention.sh``),
the DALI-fed synthetic step ran at 61.6 clips/s with torch's 2 threads and 121.8 with 1; on the
quiet machine 2 threads were a little faster (142.3 vs 133.6). So a run starts with
``cores - busy`` threads, at least 1, split between the ranks on this machine, where ``busy`` is
how many cores other processes kept busy over a quarter of a second at start-up (from
``/proc/stat``; not the 1-minute load average, which still counts a job that just ended).
``OMP_NUM_THREADS`` set by the user wins.
"""
import os
import time


def free_cores(cores: int, busy: float, local_ranks: int = 1) -> int:
    """Threads for each of ``local_ranks`` processes when other jobs keep ``busy`` of ``cores`` busy."""
    return max(1, int(round(cores - busy)) // max(1, local_ranks))


def busy_cores(interval: float = 0.25) -> float:
    """Cores kept busy by any process over ``interval`` seconds (this one is idle meanwhile):
    the non-idle share of the CPU time ``/proc/stat`` counts, times the cores it counts. Falls
    back to the 1-minute load average where there is no ``/proc/stat``."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        with open("/proc/stat") as f:
            cores = sum(1 for line in f if line.startswith("cpu") and line[3].isdigit())
        (t0, i0), _ = sample(), time.sleep(interval)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return cores * (1 - (i1 - i0) / max(t1 - t0, 1))


def choose_cpu_threads(verbose: bool = True) -> int | None:
    """Set torch's intra-op threads from the free cores unless OMP_NUM_THREADS says otherwise;
    returns the number set (None when the user's setting stands)."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = busy_cores()
    n = free_cores(cores, busy, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
        if verbose:
            print(f"torch threads: {n} of {cores} cores ({busy:.1f} busy with other processes; "
                  "OMP_NUM_THREADS=N sets it)")
    return n
