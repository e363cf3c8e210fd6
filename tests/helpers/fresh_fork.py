"""Run ``index_tree``, ``prepare_tree`` or the ``timeclr.data`` command in a fresh process whose
pool workers are forked from it, with one function patched to crash or hang on one file, or to
write onto a full disk: how the tests inject a decoder that segfaults or hangs, or a disk that
fills up. Forking the test process itself would carry the patch too, but also the state
of its threads: a worker forked from a pytest process with DALI pipelines alive once hung in
DALI's teardown for the whole 600 s deadline (tests/test_disk_full.py). This process forks before
it has used DALI or started a thread.

    python -m tests.helpers.fresh_fork SPEC_JSON    # prints the call's result as JSON, last line
"""
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_patched(call: str, patch: str, on, how: str, args: list, kwargs: dict, timeout: float = 300):
    """The result of ``call`` ('index_tree', 'prepare_tree' or 'data_main', with ``args`` and
    ``kwargs``) in a fresh process where ``patch`` ('index.probe_video', 'transcode._transcode' or
    'transcode.part_path') crashes (``how='crash'``) or hangs (``'hang'``) on the file named ``on``,
    or (``'full'``, for part_path) hands out paths linked to /dev/full from its ``on``-th call on:
    index_tree's tuple as a list, a PrepareReport as a dict of its done, skipped and failed, the
    command's ``{"SystemExit": message}`` or ``{"returned": code}``."""
    spec = json.dumps({"call": call, "patch": patch, "on": on, "how": how, "args": [str(a) for a in args],
                       "kwargs": kwargs})
    r = subprocess.run([sys.executable, "-m", "tests.helpers.fresh_fork", spec], cwd=REPO, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"fresh_fork {call} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def _patched(real, on: str, how: str):
    def patched(path, *args, **kwargs):
        if Path(path).name == on:
            if len(args) == 3:  # transcode._transcode(src, part, settings, threads): stop mid-write
                args[0].write_bytes(b"the first half of a video")
            if how == "crash":
                os._exit(1)  # as a segfaulting decoder would: the worker dies
            time.sleep(3600)
        return real(path, *args, **kwargs)
    return patched


def _full_from(real, nth: int):
    seen = []

    def patched(out_path):
        part = real(out_path)
        seen.append(out_path)
        if len(seen) >= nth:
            os.symlink("/dev/full", part)  # writes to it fail with ENOSPC, as on a full disk
        return part
    return patched


def _data_main(*args):
    from timeclr.data import main
    try:
        return {"returned": main(list(args))}
    except SystemExit as e:
        return {"SystemExit": str(e.code)}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    from timeclr.pipelines.ingest import index, pool, prepare, transcode

    module_name, attr = spec["patch"].split(".")
    module = {"index": index, "transcode": transcode}[module_name]
    real = getattr(module, attr)
    setattr(module, attr, _full_from(real, int(spec["on"])) if spec["how"] == "full" else
            _patched(real, spec["on"], spec["how"]))
    pool.WORKERS = multiprocessing.get_context("fork")  # the workers inherit the patch
    call = {"index_tree": index.index_tree, "prepare_tree": prepare.prepare_tree, "data_main": _data_main}[spec["call"]]
    result = call(*spec["args"], **spec["kwargs"])
    if isinstance(result, prepare.PrepareReport):
        result = {"done": result.done, "skipped": result.skipped, "failed": result.failed}
    print(json.dumps(result))
