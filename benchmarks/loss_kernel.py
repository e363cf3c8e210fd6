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
              subprocess (``python -m timeclr.benchmarks.loss_kernel_measure``); the peak RSS (VmHWM, reset
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
    python benchmarks/loss_kernel.py --device cpu --quick          # ~1 min on 2 cores, into results/quick/
    python benchmarks/loss_kernel.py --device cpu --n2 8192 --dims 128 --dtypes fp32
    python benchmarks/loss_kernel.py --device cpu --n2 8192 --dims 128 --methods eager chunked \\
        --chunk-mb 2 8 32 --tag chunks                             # try slab sizes
    python benchmarks/loss_kernel.py --device cuda --dtypes bf16   # a third of the GPU sweep

Ctrl-C (or SIGTERM, e.g. from ``timeout``) stops the sweep and still reports what was measured.

Writes ``<out>/loss_kernel_<device>[_<tag>].csv`` (a plain CSV; the run's metadata in the ``.json``
beside it) and ``.png`` (time vs 2N per method, log-log, one panel per D, plus a panel of peak
memory), and prints the same numbers as a table. ``<out>`` is ``benchmarks/results/``, or
``benchmarks/results/quick/`` (git-ignored) with ``--quick``.

The parts: this file (what to sweep, in what order), ``loss_kernel_measure.py`` (one
configuration: the methods, time, memory, correctness), ``loss_kernel_report.py`` (derived
numbers, table, files, figure).
"""
import argparse
import gc
import signal
import time

import torch

from timeclr.benchmarks.harness import finish_metadata, results_dir, run_metadata
from timeclr.benchmarks.loss_kernel_measure import (DTYPES, FUSED_ON_CPU, METHODS, TAU, cannot_fit, check_correctness,
                                                    measure, measure_in_subprocess)
from timeclr.benchmarks.loss_kernel_report import derive, report
from timeclr.kernels import nt_xent_chunked

SWEEPS = {  # (device, quick) -> default 2N values, D values, dtypes
    ("cuda", False): ([4096, 8192, 16384, 32768, 65536, 131072], [128, 256, 512], ["bf16", "fp16", "fp32"]),
    ("cuda", True): ([4096, 16384, 65536], [128], ["bf16", "fp32"]),
    ("cpu", False): ([2048, 4096, 8192], [128, 256, 512], ["fp32"]),
    ("cpu", True): ([2048, 8192], [128], ["fp32"]),
}


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


def metadata(args) -> dict:
    return run_metadata({"tau": TAU, "default CHUNK_BYTES": f"{nt_xent_chunked.CHUNK_BYTES / 2**20:g} MiB"},
                        cuda=args.device == "cuda", libs=("torch", "triton"))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="a small sweep (CPU: 2N in {2048, 8192}, D=128, fp32), "
                   "into benchmarks/results/quick/ (git-ignored)")
    p.add_argument("--out", help="output folder (default benchmarks/results/, --quick: benchmarks/results/quick/)")
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
    args = p.parse_args()
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
    meta, t_start = metadata(args), time.perf_counter()
    print(f"NT-Xent benchmark on {meta['device']}: 2N {args.n2}, D {args.dims}, {args.dtypes}, "
          f"methods {args.methods}", flush=True)
    rows, mm, correctness = [], {}, {}
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a `timeout` still gets a report
    try:
        sweep(args, rows, mm, correctness)
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what was measured so far", flush=True)
    derive(rows, mm, correctness)
    finish_metadata(meta, t_start)
    tag = args.tag or ("quick" if args.quick else "")  # a quick run never overwrites the full sweep's files
    stem = results_dir(args.out, args.quick) / f"loss_kernel_{args.device}{'_' + tag if tag else ''}"
    report(rows, mm, correctness, meta, args.device, stem)


if __name__ == "__main__":
    main()
