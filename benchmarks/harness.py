"""What every benchmark and experiment shares: where its files go, what it records about its run,
how it writes its results, prints its table and saves its figure.

    from timeclr.benchmarks.harness import results_dir, run_metadata, finish_metadata, write_results

Where:
    ``results_dir(out, quick)``  ``out`` if given, else ``benchmarks/results/``, or, for a
        ``--quick`` run, ``benchmarks/results/quick/`` (git-ignored: a smoke run never dirties
        the checkout)
What was run:
    ``run_metadata(settings, cuda=..., libs=(...))``  the machine (GPU name, or CPU model with
        cores and torch threads), ``settings`` (the benchmark's own), the versions of ``libs``
        (torch, triton, DALI, PyAV), the git revision (``-dirty`` when tracked files differ), the
        date, the 1-minute load average and the command line
    ``finish_metadata(meta, t_start)``  the load average at the end, the wall time, the command last
Results:
    ``write_results(stem, meta, columns, rows, sidecar)``  ``STEM.csv``: a plain CSV, the header
        on its first line (``csv.DictReader`` and ``pandas.read_csv`` read it as is), and
        ``STEM.json``: ``{"meta": meta, **sidecar}``; each file whole or not at all
    ``read_results(stem)``  (meta, rows) back
Console and figures:
    ``print_meta``, ``print_table`` (right-aligned columns); figures draw with
    ``timeclr.training.plots.pyplot`` (matplotlib on Agg),
    ``save_figure`` (the metadata as the figure's title, saved whole)
Statistics and the machine:
    ``mean_std`` (mean, std and 95 % t interval over runs), ``wait_for_quiet`` (for a quiet machine)
"""
import csv
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from timeclr.files.atomic import atomic_open, atomic_path, write_json
from timeclr.training.plots import pyplot

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
QUICK = RESULTS / "quick"  # git-ignored (.gitignore)


# ---------------------------------------------------------------------------------------------
# where
# ---------------------------------------------------------------------------------------------


def results_dir(out=None, quick: bool = False) -> Path:
    """The folder a run writes into (created): ``out`` when given, else ``benchmarks/results/``,
    or ``benchmarks/results/quick/`` for a quick run, which git ignores."""
    folder = Path(out) if out else QUICK if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------------------------------------
# what was run
# ---------------------------------------------------------------------------------------------


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


def version(lib: str) -> str:
    """The version of torch, triton, DALI or PyAV (with its libavcodec), or 'not installed'."""
    try:
        if lib == "torch":
            import torch

            return torch.__version__
        if lib == "triton":
            import triton

            return triton.__version__
        if lib == "DALI":
            import nvidia.dali

            return nvidia.dali.__version__
        if lib == "PyAV":
            import av

            return f"{av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})"
    except ImportError:
        return "not installed"
    raise ValueError(f"unknown library {lib!r}")


def command_line() -> str:
    """``python benchmarks/X.py ARGS`` as run (the script's path relative to the repository)."""
    script = sys.argv[0]
    try:
        script = os.path.relpath(Path(script).resolve(), REPO) if script else script
    except ValueError:  # another drive
        pass
    return "python " + shlex.join([script, *sys.argv[1:]])


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def run_metadata(settings: dict | None = None, *, cuda: bool = False, libs=("torch",), load=None) -> dict:
    """The run's metadata: the device, ``settings`` (the benchmark's own, in order), the versions
    of ``libs``, the git revision, date, the 1-minute load average at the start (``load``:
    ``wait_for_quiet``'s triple, else now) and the command line."""
    meta = {"device": device_name(cuda), **(settings or {})}
    meta.update({lib: version(lib) for lib in libs})
    load = load or (os.getloadavg()[0], None, 0)
    waited = f", {load[1]:.2f} after waiting {load[2]} s" if load[2] else ""
    meta.update({
        "git": git_rev(),
        "date": now(),
        "load avg (1 min) at start": f"{load[0]:.2f}{waited}",
        "command": command_line(),
    })
    return meta


def finish_metadata(meta: dict, t_start: float | None = None, extra: dict | None = None) -> dict:
    """Add the load average at the end, ``extra`` and (given ``t_start``, a perf_counter) the
    wall time; the command stays last."""
    meta["load avg (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
    meta.update(extra or {})
    if t_start is not None:
        meta["wall time"] = f"{time.perf_counter() - t_start:.0f} s"
    meta["command"] = meta.pop("command", command_line())
    return meta


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


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# results: CSV + JSON sidecar
# ---------------------------------------------------------------------------------------------


def csv_value(v, digits: int | None = 6):
    """A CSV cell: '' for None, ``digits`` significant digits for floats (None: all of them)."""
    if v is None:
        return ""
    if isinstance(v, float) and digits is not None:
        return f"{v:.{digits}g}"
    return v


def write_results(stem, meta: dict, columns: list, rows: list, sidecar: dict | None = None,
                  digits: int | None = 6) -> tuple[Path, Path]:
    """``STEM.csv``: the header, then one line per row dict (missing keys blank, floats to
    ``digits`` significant digits), nothing else; ``STEM.json``: ``{"meta": meta, **sidecar}``,
    the run's metadata and whatever else the benchmark keeps (summaries, estimates). Each file is
    written whole or not at all: an interrupted benchmark leaves the previous results in place."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json")
    with atomic_open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([csv_value(r.get(c), digits) for c in columns])
    write_json(json_path, {"meta": meta, **{k: v for k, v in (sidecar or {}).items() if k != "meta"}})
    return csv_path, json_path


def read_results(stem) -> tuple[dict, list]:
    """(the sidecar's metadata, the CSV's rows as dicts of strings) of ``STEM.csv`` / ``STEM.json``."""
    stem = Path(str(stem).removesuffix(".csv"))
    with open(stem.with_name(stem.name + ".json")) as f:
        meta = json.load(f)["meta"]
    with open(stem.with_name(stem.name + ".csv"), newline="") as f:
        return meta, list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------
# console and figures
# ---------------------------------------------------------------------------------------------


def print_meta(meta: dict):
    """The run's metadata, one '# key: value' line each (console only: files keep it in the JSON)."""
    for k, v in meta.items():
        print(f"# {k}: {v}")


def print_table(header, cells):
    """Print rows of strings under ``header``, right-aligned."""
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    for line in [header, ["-" * w for w in widths], *cells]:
        print("  ".join(x.rjust(w) for x, w in zip(line, widths)))


def save_figure(fig, title: str, meta: dict, path, fontsize: float = 7):
    """Put ``title | key: value | ...`` (the run's metadata, wrapped) over ``fig``, save it to
    ``path`` whole or not at all (a PNG an interrupted run leaves is the previous one), close it."""
    import textwrap

    plt = pyplot()
    info = title + " | " + " | ".join(f"{k}: {v}" for k, v in meta.items())
    fig.suptitle("\n".join(textwrap.wrap(info, width=int(17 * fig.get_figwidth()))), fontsize=fontsize)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
