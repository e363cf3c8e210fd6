"""A crash-isolating process pool: one task per file, where one file may kill its worker.

Probing (``timeclr.pipelines.index``) and preparing (``timeclr.pipelines.prepare``) hand every
file of a tree to FFmpeg, and a damaged file can crash a decoder (a segfault, not an exception).
Such a crash must fail that file alone, not the run or the other files in flight with it.
"""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

# Workers come from a fork server (a fresh interpreter that forks them), never by forking the
# caller: a caller with threads (DALI's, torch's, a test runner's) forked mid-lock leaves a child
# that waits forever on a lock no thread will release.
WORKERS = multiprocessing.get_context("forkserver")


def run_per_file(task, jobs: dict, workers: int, desc: str, on_crash, progress: bool = True) -> dict:
    """``{key: task(*args)}`` for every ``key: args`` of ``jobs``, in ``workers`` processes (in
    this process for workers <= 1), with a tqdm bar. ``task`` must not raise: it returns an outcome.

    A worker that dies (a decoder crash) breaks the whole pool and every unfinished job with it;
    those are rerun one by one in a fresh process each, so only the file that caused the crash
    gets ``on_crash(key)`` as its outcome and the others get their own.
    """
    outcomes, crashed = {}, []
    with tqdm(total=len(jobs), desc=desc, unit="video", disable=not progress) as bar:
        if workers <= 1:
            for key, args in jobs.items():
                outcomes[key] = task(*args)
                bar.update()
        elif jobs:
            with ProcessPoolExecutor(workers, mp_context=WORKERS) as pool:
                futures = {pool.submit(task, *args): key for key, args in jobs.items()}
                for future in as_completed(futures):
                    try:
                        outcomes[futures[future]] = future.result()
                    except BrokenProcessPool:
                        crashed.append(futures[future])
                    bar.update()
    for key in sorted(crashed):
        try:
            with ProcessPoolExecutor(1, mp_context=WORKERS) as pool:
                outcomes[key] = pool.submit(task, *jobs[key]).result()
        except BrokenProcessPool:
            outcomes[key] = on_crash(key)
    return outcomes
