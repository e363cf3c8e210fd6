"""One configuration of the loss benchmark (``loss_kernel.py``), measured: the four methods, the
time and peak extra memory of a forward+backward (in this process on CUDA, in a fresh one on CPU,
``python -m timeclr.benchmarks.loss_kernel_measure SPEC``), whether the (2N)² matrices can fit,
and the correctness check against float64. How each is measured: ``loss_kernel.py``'s docstring.
"""
import ctypes
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from timeclr.loss import nt_xent
from timeclr.kernels import nt_xent_chunked

TAU = 0.1
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
METHODS = ("eager", "compile", "chunked", "fused")
FUSED_ON_CPU = "fused: skipped on CPU (the Triton interpreter, TRITON_INTERPRET=1, is far too slow to time)"
WORKER = "timeclr.benchmarks.loss_kernel_measure"

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
    cmd = [sys.executable, "-m", WORKER, json.dumps(spec)]
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


def main(argv=None):
    """The worker: ``measure(SPEC)`` in this fresh process, printed as one 'RESULT {json}' line."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(f"usage: python -m {WORKER} SPEC_JSON  (loss_kernel.py's CPU worker)\n\n{__doc__}")
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    spec = json.loads(argv[0])
    print("RESULT " + json.dumps(measure(spec)), flush=True)


if __name__ == "__main__":
    main()
