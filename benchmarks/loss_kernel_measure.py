"""Benchmark: the NT-Xent (SimCLR) loss with V = 2 views, forward + backward, four ways.

What is measured
----------------
For raw (unnormalised) embeddings z1, z2 of shape (N, D), 2N rows in all, and τ = 0.1, the cost of
``loss = f(z1, z2); loss.backward()`` (gradients w.r.t. z1 and z2) for

    eager    the plain PyTorch a user would write (``eager_nt_xent`` below): normalise, build the
             (2N, 2N) similarity matrix, mask its diagonal, cross-entropy against the positives
    compile  ``torch.compile(eager_nt_xent)``: default inductor, static shapes, on CPU too
    chunked  ``timeclr.nt_xent(z1, z2, backend='torch')``: chunked PyTorch, one (chunk, 2N) slab
             of the similarity matrix at a time (slab size: ``nt_xent_chunked.CHUNK_BYTES``,
             set with ``--chunk-mb``)
    fused    ``timeclr.nt_xent(z1, z2, backend='triton')``: the fused Triton kernel. CUDA only:
             on CPU Triton's interpreter is far too slow to time, so it is skipped there.

For every (method, 2N, D, dtype):

    time      median of several forward+backward reps after warm-up (CUDA: torch.cuda.Event
              around each rep, then synchronize; CPU: time.perf_counter)
    memory    peak *extra* memory of one forward+backward after warm-up, inputs already allocated.
              CUDA: max_memory_allocated() after reset_peak_memory_stats(), minus
              memory_allocated() just before the call. CPU: every measurement runs in a fresh
              subprocess (this script with a hidden --_worker flag); the peak RSS (VmHWM, reset
              through /proc/self/clear_refs) minus the RSS just before the call (after
              malloc_trim, so freed heap memory kept by glibc from the warm-up is not counted).
              Warm-up comes first so that torch.compile's compilation is not counted.
              On CPU this is what the process really holds, glibc's heap included: a method that
              frees and reallocates many mid-sized blocks (chunked: its slabs) can show up to ~2x
              its live tensors. ``--live-rss`` makes glibc unmap every block on free, so the RSS
              follows the live tensors (and those methods get slower: use it for memory only).
    TFLOP/s   6·(2N)²·D FLOPs per forward+backward (2 for s = ẑẑᵀ, 4 for its backward)
    % of mm   that TFLOP/s as a fraction of a plain ``torch.mm`` of (2N, D) by (D, 2N) in the
              same dtype, timed the same way in the same run (2·(2N)²·D FLOPs): how close the
              loss gets to the matmuls it cannot avoid
    x eager, x compile   speedups of chunked and fused over eager and over compile

Once per (D, dtype), at the smallest 2N, the loss and gradient of eager, chunked (and fused on
CUDA) are compared with ``eager_nt_xent`` run in float64 (max abs differences), so a GPU run
doubles as a correctness check.

An out-of-memory error is recorded as "OOM", never a crash; eager, compile and the mm reference
are not even tried where their (2N)² matrices cannot fit in free memory ("OOM(est)").
Matmuls use PyTorch's default precision (no TF32 for fp32, as the fused kernel).

On a small shared CPU box, other processes wreck multi-threaded timings (every parallel region
waits for a descheduled thread, and chunked has hundreds of them per call): watch the load
averages written into the metadata, and try ``--threads 1`` for numbers that survive contention.

How to run
----------
    python benchmarks/loss_kernel.py --device cuda                 # full GPU sweep
    python benchmarks/loss_kernel.py --device cpu                  # ~4 min on 2 cores
    python benchmarks/loss_kernel.py --device cpu --quick          # ~1 min on 2 cores
    python benchmarks/loss_kernel.py --device cpu --n2 8192 --dims 128 --dtypes fp32
    python benchmarks/loss_kernel.py --device cpu --n2 8192 --dims 128 --methods eager chunked \\
        --chunk-mb 2 8 32 --tag chunks                             # try slab sizes
    python benchmarks/loss_kernel.py --device cuda --dtypes bf16   # a third of the GPU sweep

Ctrl-C (or SIGTERM, e.g. from ``timeout``) stops the sweep and still reports what was measured.

Writes ``<out>/loss_kernel_<device>[_<tag>].csv`` (metadata as '#' lines on top) and ``.png``
(time vs 2N per method, log-log, one panel per D, plus a panel of peak memory), and prints the
same numbers as a table.
"""
import argparse
import csv
import ctypes
import datetime
import gc
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from runinfo import csv_value, device_name, git_rev, print_table
from timeclr import nt_xent
from timeclr.kernels import nt_xent_chunked

TAU = 0.1
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
METHODS = ("eager", "compile", "chunked", "fused")
SWEEPS = {  # (device, quick) -> default 2N values, D values, dtypes
    ("cuda", False): ([4096, 8192, 16384, 32768, 65536, 131072], [128, 256, 512], ["bf16", "fp16", "fp32"]),
    ("cuda", True): ([4096, 16384, 65536], [128], ["bf16", "fp32"]),
    ("cpu", False): ([2048, 4096, 8192], [128, 256, 512], ["fp32"]),
    ("cpu", True): ([2048, 8192], [128], ["fp32"]),
}
FUSED_ON_CPU = "fused: skipped on CPU (the Triton interpreter, TRITON_INTERPRET=1, is far too slow to time)"


# ---------------------------------------------------------------------------------------------
# the methods
# ---------------------------------------------------------------------------------------------


def eager_nt_xent(z1, z2, tau=TAU):
    """NT-Xent as a user would write it: the whole (2N, 2N) similarity matrix, then cross-entropy."""
    z = torch.cat([F.normalize(z1, dim=1), F.normalize(z2, dim=1)])  # (2N, D)
    sim = z @ z.T / tau  # (2N, 2N)
    n2 = z.shape[0]
    self_mask = torch.eye(n2, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))  # a row is not its own negative
    labels = (torch.arange(n2, device=z.device) + n2 // 2) % n2  # row i's positive: its other view
    return F.cross_entropy(sim, labels)


def make_method(name):
    """The loss function ``f(z1, z2) -> scalar`` of one method."""
    if name == "eager":
        return eager_nt_xent
    if name == "compile":
        torch._dynamo.reset()  # a fresh cache (and recompile budget) for every configuration
        return torch.compile(eager_nt_xent, dynamic=False)
    if name in ("chunked", "fused"):
        backend = "torch" if name == "chunked" else "triton"
        return lambda z1, z2: nt_xent(z1, z2, temperature=TAU, backend=backend)
    raise ValueError(f"unknown method {name!r}")


# ---------------------------------------------------------------------------------------------
# timing and memory
# ---------------------------------------------------------------------------------------------


def is_oom(e: BaseException) -> bool:
    """CUDA OOM, Python MemoryError, or the CPU allocator's (or a compiler's wrapped) OOM message."""
    msg = str(e).lower()
    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in msg \
        or "not enough memory" in msg


def _proc_status_kb(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _malloc_trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap memory back to the OS
    except (OSError, AttributeError):
        pass


def time_reps(step, device, max_reps, budget_s) -> float:
    """Median time in ms of ``step()``: at least 3 reps, at most max_reps, stopping after budget_s."""
    times = []
    while len(times) < 3 or (len(times) < max_reps and sum(times) < 1e3 * budget_s):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def peak_extra_bytes(step, device):
    """Peak memory of one ``step()`` above what was allocated (CUDA) or resident (CPU) before it."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before, ""
    _malloc_trim()
    before = _proc_status_kb("VmRSS")
    exact = _reset_peak_rss()
    step()
    note = "" if exact else "VmHWM not resettable: memory is an upper bound"
    return 1024 * (_proc_status_kb("VmHWM") - before), note


def measure(spec: dict) -> dict:
    """Time and peak extra memory of one (method, 2N, D, dtype), in this process.

    ``spec['method']`` is one of METHODS or 'mm' (the matmul reference). Returns a dict with
    ``status`` ('ok', 'OOM' or 'error'), ``time_ms``, ``mem_bytes`` and ``note``.
    """
    device, dtype, n2, d = spec["device"], DTYPES[spec["dtype"]], spec["n2"], spec["d"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec.get("chunk_mb"):
        nt_xent_chunked.CHUNK_BYTES = int(spec["chunk_mb"] * 2**20)
    gen = torch.Generator().manual_seed(0)
    try:
        if spec["method"] == "mm":
            a = torch.randn(n2, d, generator=gen).to(device, dtype)
            b = torch.randn(d, n2, generator=gen).to(device, dtype)
            zs = []

            def step():
                torch.mm(a, b)
        else:
            fn = make_method(spec["method"])
            zs = [torch.randn(n2 // 2, d, generator=gen).to(device, dtype).requires_grad_() for _ in range(2)]

            def step():
                for z in zs:
                    z.grad = None
                fn(*zs).backward()

        t0 = time.perf_counter()
        for i in range(spec["warmup"]):  # the first call also compiles (compile, fused)
            step()
            if i >= 1 and time.perf_counter() - t0 > spec["budget"]:
                break  # slow configurations need less warm-up
        for z in zs:  # the gradients are counted as part of the call's memory
            z.grad = None
        mem, note = peak_extra_bytes(step, device)
        ms = time_reps(step, device, spec["reps"], spec["budget"])
        return dict(status="ok", time_ms=ms, mem_bytes=mem, note=note)
    except Exception as e:  # noqa: BLE001 -- an OOM (or a broken method) is a result, not a crash
        if is_oom(e):
            return dict(status="OOM", note=type(e).__name__)
        return dict(status="error", note=f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}")


def measure_in_subprocess(spec: dict) -> dict:
    """``measure(spec)`` in a fresh Python process, so that its peak RSS is its own (CPU)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)]
    env = dict(os.environ)
    if spec.get("live_rss"):  # glibc then mmaps (and unmaps on free) every block >= 128 KiB
        env["MALLOC_MMAP_THRESHOLD_"] = str(128 << 10)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    except subprocess.TimeoutExpired:
        return dict(status="error", note="worker timed out after 1 h")
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    if p.returncode == -9:
        return dict(status="OOM", note="worker killed by SIGKILL (the kernel's OOM killer?)")
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return dict(status="error", note=f"worker exit {p.returncode}: {tail[:160]}")


def free_bytes(device) -> int:
    if device == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        return torch.cuda.mem_get_info()[0]
    return 1024 * int(re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M).group(1))


def cannot_fit(method, n2, dtype, device):
    """A lower bound on the (2N)² memory of eager/compile/mm, when it exceeds free memory, else None."""
    itemsize = DTYPES[dtype].itemsize
    # eager: sim, the masked sim and log-softmax (or its gradient) at once, plus the bool eye mask
    per_element = {"eager": 3 * itemsize + 1, "compile": 2 * itemsize, "mm": itemsize}.get(method)
    if per_element is None:
        return None
    need, free = n2 * n2 * per_element, free_bytes(device)
    return f"needs > {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free" if need > free else None


# ---------------------------------------------------------------------------------------------
# correctness
# ---------------------------------------------------------------------------------------------


def check_correctness(n2, d, dtype, device, methods) -> dict:
    """max |Δloss| and max |Δgrad| of eager/chunked/fused in ``dtype`` vs eager in float64."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, n2 // 2, d, generator=gen, dtype=torch.float64).to(device)

    def loss_and_grad(fn, dt):
        z1, z2 = (z[i].to(dt, copy=True).requires_grad_() for i in range(2))
        loss = fn(z1, z2)
        loss.backward()
        return loss.detach().double(), torch.cat([z1.grad, z2.grad]).double()

    ref_loss, ref_grad = loss_and_grad(eager_nt_xent, torch.float64)
    out = {}
    for m in ["eager"] + [m for m in ("chunked", "fused") if m in methods]:
        try:
            loss, grad = loss_and_grad(make_method(m), DTYPES[dtype])
            out[m] = dict(dloss=(loss - ref_loss).abs().item(), dgrad=(grad - ref_grad).abs().max().item(),
                          gmax=ref_grad.abs().max().item(), loss=ref_loss.item())
        except Exception as e:  # noqa: BLE001
            out[m] = dict(note=f"{'OOM' if is_oom(e) else type(e).__name__}")
    return out


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------


def sweep(args, rows, mm, correctness):
    """Measure every configuration, appending to ``rows`` (methods), ``mm`` and ``correctness``."""
    run = measure_in_subprocess if args.device == "cpu" else measure

    def one(spec):
        reason = cannot_fit(spec["method"], spec["n2"], spec["dtype"], args.device)
        res = dict(status="OOM(est)", note=reason) if reason else run(spec)
        if args.device == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
        label = spec["method"] + (f"@{spec['chunk_mb']:g}MB" if spec.get("chunk_mb") else "")
        shown = f"{res['time_ms']:10.2f} ms" if res["status"] == "ok" else res["status"]
        print(f"  {label:<14} 2N={spec['n2']:<7} D={spec['d']:<4} {spec['dtype']:<5} {shown}"
              f"  {res.get('note') or ''}", flush=True)
        return res

    for dtype in args.dtypes:
        for d in args.dims:
            n2_min = min(args.n2)
            nt_xent_chunked.CHUNK_BYTES = int(args.chunk_mb[0] * 2**20)
            correctness[(n2_min, d, dtype)] = check_correctness(n2_min, d, dtype, args.device, args.methods)
            for n2 in args.n2:
                base = dict(device=args.device, n2=n2, d=d, dtype=dtype, warmup=args.warmup, reps=args.reps,
                            budget=args.budget, threads=args.threads,
                            live_rss=args.live_rss)
                mm[(n2, d, dtype)] = one({**base, "method": "mm"})
                for method in args.methods:
                    for chunk_mb in (args.chunk_mb if method == "chunked" else [None]):
                        spec = {**base, "method": method, "chunk_mb": chunk_mb}
                        rows.append({**spec, **one(spec)})


def derive(rows, mm, correctness):
    """Add TFLOP/s, the fraction of the matmul's, speedups and the correctness check to the rows."""
    by_key = {(r["method"], r["n2"], r["d"], r["dtype"]): r for r in rows if r["status"] == "ok"}
    for r in rows:
        key = (r["n2"], r["d"], r["dtype"])
        if r["status"] == "ok":
            r["tflops"] = 6 * r["n2"] ** 2 * r["d"] / (r["time_ms"] * 1e-3) / 1e12
            if mm[key]["status"] == "ok":
                r["mm_tflops"] = 2 * r["n2"] ** 2 * r["d"] / (mm[key]["time_ms"] * 1e-3) / 1e12
                r["frac_mm"] = r["tflops"] / r["mm_tflops"]
            if r["method"] in ("chunked", "fused"):
                for ref in ("eager", "compile"):
                    if (ref, *key) in by_key:
                        r[f"x_{ref}"] = by_key[(ref, *key)]["time_ms"] / r["time_ms"]
        check = correctness.get(key, {}).get(r["method"], {})
        r.update({k: check[k] for k in ("dloss", "dgrad") if k in check})


# ---------------------------------------------------------------------------------------------
# report: table, CSV, plot
# ---------------------------------------------------------------------------------------------

COLUMNS = [  # (CSV field, table header, format)
    ("method", "method", "{}"), ("n2", "2N", "{}"), ("d", "D", "{}"), ("dtype", "dtype", "{}"),
    ("chunk_mb", "chunk MB", "{:g}"), ("status", "status", "{}"), ("time_ms", "time ms", "{:.2f}"),
    ("mem_bytes", "peak MiB", None), ("tflops", "TFLOP/s", "{:.3f}"), ("mm_tflops", "mm TFLOP/s", "{:.3f}"),
    ("frac_mm", "% of mm", None), ("x_eager", "x eager", "{:.2f}"), ("x_compile", "x compile", "{:.2f}"),
    ("dloss", "|dloss| vs fp64", "{:.1e}"), ("dgrad", "|dgrad| vs fp64", "{:.1e}"),
]


def _cell(r, field, fmt):
    v = r.get(field)
    if v is None:
        return "-"
    if field == "mem_bytes":
        return f"{v / 2**20:.1f}"
    if field == "frac_mm":
        return f"{100 * v:.0f}%"
    return fmt.format(v)


def report(rows, mm, correctness, meta, args):
    if not rows:
        print("nothing was measured")
        return
    print()
    for k, v in meta.items():
        print(f"# {k}: {v}")
    print()
    print_table([h for _, h, _ in COLUMNS], [[_cell(r, f, fmt) for f, _, fmt in COLUMNS] for r in rows])
    notes = [f"{r['method']} 2N={r['n2']} D={r['d']} {r['dtype']}: {r['note']}" for r in rows if r.get("note")]
    if notes:
        print("\nnotes:\n  " + "\n  ".join(notes))
    print("\ncorrectness vs eager_nt_xent in float64 (loss; gradient w.r.t. z1, z2):")
    print_table(["2N", "D", "dtype", "method", "loss (fp64)", "max|dloss|", "max|dgrad|", "max|grad|"],
                [[str(n2), str(d), dt, m, *([f"{c['loss']:.6f}", f"{c['dloss']:.1e}", f"{c['dgrad']:.1e}",
                                             f"{c['gmax']:.1e}"] if "dloss" in c else [c["note"], "-", "-", "-"])]
                 for (n2, d, dt), checks in correctness.items() for m, c in checks.items()])
    if args.device == "cpu":
        print("\n" + FUSED_ON_CPU)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or ("quick" if args.quick else "")  # a quick run never overwrites the full sweep's files
    stem = out / f"loss_kernel_{args.device}{'_' + tag if tag else ''}"
    with open(f"{stem}.csv", "w", newline="") as f:
        for k, v in meta.items():
            f.write(f"# {k}: {v}\n")
        writer = csv.writer(f)
        writer.writerow([f for f, _, _ in COLUMNS] + ["note"])
        for r in rows:
            writer.writerow([csv_value(r.get(c)) for c, _, _ in COLUMNS] + [r.get("note") or ""])
        for (n2, d, dt), res in mm.items():  # the matmul reference, as rows of its own
            r = dict(method="mm", n2=n2, d=d, dtype=dt, **res)
            if res["status"] == "ok":
                r["mm_tflops"] = 2 * n2 * n2 * d / (res["time_ms"] * 1e-3) / 1e12
            writer.writerow([csv_value(r.get(c)) for c, _, _ in COLUMNS] + [r.get("note") or ""])
    plot(rows, mm, meta, f"{stem}.png")
    print(f"\nwrote {stem}.csv and {stem}.png")


def plot(rows, mm, meta, path):
    """Time vs 2N per method (log-log), one panel per D, and peak memory vs 2N at the largest D."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = sorted({r["d"] for r in rows})
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    chunks = {r["chunk_mb"] for r in rows if r["method"] == "chunked"}
    colors = {"eager": "C0", "compile": "C1", "chunked": "C2", "fused": "C3"}
    styles = dict(zip(dtypes, ["-", "--", ":", "-."]))

    def series(d, field):
        """(label, color, style, xs, ys) per (method, chunk, dtype), successful points only."""
        groups = {}
        for r in rows:
            if r["d"] == d and r["status"] == "ok":
                groups.setdefault((r["method"], r["chunk_mb"], r["dtype"]), []).append((r["n2"], r[field]))
        for (m, c, dt), pts in groups.items():
            label = m + (f"@{c:g}MB" if c and len(chunks) > 1 else "") + (f" {dt}" if len(dtypes) > 1 else "")
            color = colors[m] if not (c and len(chunks) > 1) else plt.cm.viridis(sorted(chunks).index(c) / len(chunks))
            yield label, color, styles[dt], *zip(*sorted(pts))

    fig, axes = plt.subplots(1, len(dims) + 1, figsize=(4.8 * (len(dims) + 1), 4.6), squeeze=False)
    for ax, d in zip(axes[0], dims):
        for label, color, style, xs, ys in series(d, "time_ms"):
            ax.loglog(xs, ys, style, marker="o", color=color, label=label)
        for dt in dtypes:  # the matmul reference: (2N, D) @ (D, 2N)
            pts = sorted((k[0], v["time_ms"]) for k, v in mm.items() if k[1:] == (d, dt) and v["status"] == "ok")
            if pts:
                ax.loglog(*zip(*pts), styles[dt], color="0.6", marker=".", label="torch.mm" + (f" {dt}" if len(dtypes) > 1 else ""))
        ax.set(title=f"forward+backward time, D = {d}", xlabel="2N (rows)", ylabel="ms")
        ax.set_xscale("log", base=2)
        ax.grid(True, which="both", alpha=0.3)
    ax = axes[0][-1]
    for label, color, style, xs, ys in series(dims[-1], "mem_bytes"):
        ax.loglog(xs, [y / 2**20 for y in ys], style, marker="o", color=color, label=label)
    ax.set(title=f"peak extra memory, D = {dims[-1]}", xlabel="2N (rows)", ylabel="MiB")
    ax.set_xscale("log", base=2)
    ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    ax.legend(fontsize=7)
    info = "NT-Xent forward+backward, V=2 | " + " | ".join(f"{k}: {v}" for k, v in meta.items())
    lines = textwrap.wrap(info, width=int(17 * fig.get_figwidth()))
    fig.suptitle("\n".join(lines), fontsize=8)
    fig.tight_layout()  # leaves room for the suptitle
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# metadata and main
# ---------------------------------------------------------------------------------------------


def metadata(args) -> dict:
    device = device_name(args.device == "cuda")
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    rev = git_rev()
    return {
        "device": device,
        "torch": torch.__version__,
        "triton": triton_version,
        "git": rev,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "tau": TAU,
        "load avg (1 min) at start": f"{os.getloadavg()[0]:.2f}",
        "default CHUNK_BYTES": f"{nt_xent_chunked.CHUNK_BYTES / 2**20:g} MiB",
        "command": "python " + shlex.join(sys.argv),
    }


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="a small sweep (CPU: 2N in {2048, 8192}, D=128, fp32)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    p.add_argument("--tag", default="", help="suffix of the output file names")
    p.add_argument("--n2", type=int, nargs="+", help="2N values (rows of the similarity matrix)")
    p.add_argument("--dims", type=int, nargs="+", help="embedding dimensions D")
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--chunk-mb", type=float, nargs="+", help="nt_xent_chunked.CHUNK_BYTES values to try, in MiB "
                   f"(default: the library's, {nt_xent_chunked.CHUNK_BYTES / 2**20:g})")
    p.add_argument("--warmup", type=int, help="untimed calls first (default: cuda 3, cpu 1)")
    p.add_argument("--reps", type=int, help="at most this many timed reps, at least 3 (default: cuda 20, cpu 7)")
    p.add_argument("--budget", type=float, help="stop timing after this many seconds (default: cuda 1, cpu 4)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU; default: torch's choice)")
    p.add_argument("--live-rss", action="store_true",
                   help="CPU: run the workers with MALLOC_MMAP_THRESHOLD_=128KiB, so that the RSS follows the live "
                   "tensors instead of glibc's retained heap (allocation-heavy methods get slower: page faults)")
    p.add_argument("--_worker", help=argparse.SUPPRESS)  # internal: run one measure(spec) and print it
    args = p.parse_args()
    if args._worker:
        return args
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    n2, dims, dtypes = SWEEPS[(args.device, args.quick)]
    args.n2, args.dims, args.dtypes = args.n2 or n2, args.dims or dims, args.dtypes or dtypes
    if any(n % 2 for n in args.n2):
        p.error("--n2 values must be even (2N rows: N items, two views each)")
    args.chunk_mb = args.chunk_mb or [nt_xent_chunked.CHUNK_BYTES / 2**20]
    cuda = args.device == "cuda"
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    args.reps = args.reps or (20 if cuda else 7)
    args.budget = args.budget or (1.0 if cuda else 4.0)
    if not cuda and "fused" in args.methods:
        args.methods.remove("fused")
        print(FUSED_ON_CPU)
    return args


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._worker:
        print("RESULT " + json.dumps(measure(json.loads(args._worker))), flush=True)
        return
    meta = metadata(args)
    print(f"NT-Xent benchmark on {meta['device']}: 2N {args.n2}, D {args.dims}, {args.dtypes}, "
          f"methods {args.methods}", flush=True)
    rows, mm, correctness = [], {}, {}
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a `timeout` still gets a report
    try:
        sweep(args, rows, mm, correctness)
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what was measured so far", flush=True)
    derive(rows, mm, correctness)
    meta["load avg (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
    meta["command"] = meta.pop("command")  # keep the command last
    report(rows, mm, correctness, meta, args)


if __name__ == "__main__":
    main()
