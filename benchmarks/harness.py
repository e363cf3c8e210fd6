"""What every benchmark records about its run, and how it prints its table.

Shared by the benchmark scripts in this folder (run as ``python benchmarks/<name>.py``, so this
module imports as ``runinfo``): the machine's name, the git revision the numbers come from, a
wait for a quiet machine, the plain right-aligned table they all print, and their figures' titles.
"""
import os
import re
import subprocess
import time
from pathlib import Path

from timeclr.atomic import atomic_open, atomic_path

REPO = Path(__file__).resolve().parent.parent


def device_name(cuda: bool) -> str:
    """The GPU's name, or the CPU model with the core and torch thread counts."""
    import torch

    if cuda:
        return torch.cuda.get_device_name()
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return f"{model.group(1) if model else 'unknown CPU'} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def git_rev() -> str:
    """Short hash of HEAD, with '-dirty' when tracked files differ from it."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD") or "unknown"
        return rev + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except OSError:
        return "unknown"


def wait_for_quiet(max_load: float, max_wait: int):
    """Wait (60 s at a time, at most ``max_wait`` s) for the 1-min load average to drop below
    ``max_load``; returns (load at the first check, load when going on, seconds waited)."""
    first = load = os.getloadavg()[0]
    waited = 0
    while load > max_load and waited < max_wait:
        print(f"load average (1 min) {load:.2f} > {max_load}: waiting 60 s ({waited} s so far, "
              f"at most {max_wait})", flush=True)
        time.sleep(60)
        waited += 60
        load = os.getloadavg()[0]
    if load > max_load:
        print(f"load average still {load:.2f} after {waited} s: going on (timings will suffer)", flush=True)
    return first, load, waited


# Student's t, two-sided 95 %, by degrees of freedom (n - 1): the half-width of a 95 % interval
# of a mean of n runs is T95[n - 1] * std / sqrt(n); beyond the table, the normal 1.96
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean_std(runs: list, keys) -> dict:
    """``{key: mean, key_std: sample std, key_ci95: half-width of the 95 % t interval of the
    mean}`` over the runs that have ``key`` (std and interval 0 for one run)."""
    import math
    import statistics

    out = {}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            n = len(values)
            out[key] = statistics.fmean(values)
            out[f"{key}_std"] = statistics.stdev(values) if n > 1 else 0.0
            out[f"{key}_ci95"] = T95.get(n - 1, 1.96) * out[f"{key}_std"] / math.sqrt(n) if n > 1 else 0.0
    return out


def csv_value(v):
    """A CSV cell: '' for None, 6 significant digits for floats."""
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else v


def print_table(header, cells):
    """Print rows of strings under ``header``, right-aligned."""
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    for line in [header, ["-" * w for w in widths], *cells]:
        print("  ".join(x.rjust(w) for x, w in zip(line, widths)))


def save_figure(fig, title: str, meta: dict, path, fontsize: float = 7):
    """Put ``title | key: value | ...`` (the run's metadata, wrapped) over ``fig``, save it to
    ``path`` whole or not at all (a PNG an interrupted run leaves is the previous one), close it."""
    import textwrap

    import matplotlib.pyplot as plt

    info = title + " | " + " | ".join(f"{k}: {v}" for k, v in meta.items())
    fig.suptitle("\n".join(textwrap.wrap(info, width=int(17 * fig.get_figwidth()))), fontsize=fontsize)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_csv(path, meta: dict, columns: list, rows: list):
    """``meta`` as '# key: value' lines, then a header and one line per row dict (missing keys
    blank): how every benchmark's CSV starts, so the numbers always carry their machine and command.
    Written whole or not at all: an interrupted benchmark leaves the previous results in place."""
    import csv

    with atomic_open(path, "w", newline="") as f:
        for k, v in meta.items():
            f.write(f"# {k}: {v}\n")
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([csv_value(r.get(c)) for c in columns])
