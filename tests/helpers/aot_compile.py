"""Compile the NT-Xent Triton kernels for NVIDIA GPUs ahead of time, on a machine without one, as
the runtime would compile them, and check the machine code.

Triton's CPU interpreter (what the other tests use without a GPU) does not check what only the GPU
compiler checks: tl.dot shapes and dtypes, layouts, shared memory, registers. This script runs the
real compiler down to cubin (with the ptxas in triton's wheel) on *the variant the runtime builds*:

- the launchers themselves run (``forward`` / ``backward`` on CPU tensors, with their launch
  replaced by a recorder), so the arguments, tile sizes and flags are the ones a GPU run passes;
- those arguments go through Triton's own binder (``create_function_from_signature``, then
  ``JITFunction._pack_args``, as ``JITFunction.run`` does), so pointer alignment and the
  divisibility-by-16 of integers specialise the kernel as at run time; without it, shared memory
  differs by 1.3-3.4x and cp.async disappears;
- ``cuobjdump --dump-resource-usage`` then gives registers, stack frame and shared memory, and
  the SASS shows whether the dots run on tensor cores.

A kernel fails on a compile error, any stack frame or local memory (spills), more shared memory
than the architecture has, or, for bf16 / fp16, no tensor-core instruction. A tile shape too big
for shared memory is only reported (the autotuner drops it at run time), but each kernel must fit
with some tile shape.

  python tests/helpers/aot_compile.py            sm_90, a representative set (~40 s on 2 cores, 2 processes)
  python tests/helpers/aot_compile.py --full     sm_90 and sm_80, every dtype, D and tile shape
  bash tests/helpers/aot_compile_with.sh 3.6.0   the same with another Triton (the GPU machine's)

It must run in a process where TRITON_INTERPRET is unset (see test_kernel_compiles.py).
"""
import os
import re
import subprocess
import sys
import tempfile
import time

assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "run without TRITON_INTERPRET"

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402

from timeclr.kernels import nt_xent_triton as K  # noqa: E402

# Largest shared memory per block in bytes (CUDA occupancy tables); Triton checks it only at launch.
MAX_SHARED = {80: 166912, 90: 232448}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
TENSOR_CORE_OPS = re.compile(r"\b(HMMA|HGMMA|WGMMA)\b")


class OutOfSharedMemory(RuntimeError):
    pass


class Spills(AssertionError):
    pass


def record_launches(run):
    """The (kernel, args, consts, tile shapes) that ``run()`` launches, with nothing launched; the
    tile shapes (BLOCK_M, BLOCK_N, num_warps, num_stages) are the autotuner's candidates."""
    calls = []
    saved = K._launch

    def record(kernel, tuned, rows, d_slices, args, consts):
        tiles = [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in tuned.configs]
        calls.append((kernel, args, consts, tiles))

    K._launch = record
    try:
        run()
    finally:
        K._launch = saved
    return calls


def launcher_cases(dtype, M, D, V=2):
    """(name, kernel, args, consts, tile shapes) of every kernel one loss forward + backward
    launches for a batch of M = V·N rows of width D: the launchers' own arguments, on CPU tensors."""
    z = torch.randn(M, D).to(dtype)
    inv = torch.ones(M)
    n = M // V
    yield "inv_norm", K._inv_norm_kernel, (z, inv, M, D, z.stride(0)), K._inv_norm_blocks(D), [(None, None, 4, 2)]
    (fwd,) = record_launches(lambda: K.forward(z, inv, 0, M, n, M, 0.1))
    (bwd,) = record_launches(lambda: K.backward(z, inv, inv, torch.ones(M), 0, M, n, M, 0.1))
    yield ("forward", *fwd)
    yield ("backward", *bwd)


def compile_runtime_variant(fn, args, consts, arch, num_warps, num_stages):
    """``fn[grid](*args, **consts, num_warps=, num_stages=)`` compiled as JITFunction.run would on
    an sm_``arch`` GPU, without one."""
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    kwargs = dict(consts, num_warps=num_warps, num_stages=num_stages)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization, options)
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__)


def machine_code(ck):
    """(registers, stack bytes, local bytes, tensor-core instructions) of a compiled kernel's cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(ck.asm["cubin"])
        f.flush()
        usage = subprocess.run([CUOBJDUMP, "--dump-resource-usage", f.name], capture_output=True, text=True,
                               check=True).stdout
        sass = subprocess.run([CUOBJDUMP, "-sass", f.name], capture_output=True, text=True, check=True).stdout
    get = lambda key: int(re.search(rf"\b{key}:(\d+)", usage).group(1))  # noqa: E731
    return get("REG"), get("STACK"), get("LOCAL"), len(TENSOR_CORE_OPS.findall(sass))


def check(name, fn, args, consts, arch, warps, stages, dtype):
    """Compile one case; raise OutOfSharedMemory, or AssertionError naming what is wrong."""
    ck = compile_runtime_variant(fn, args, consts, arch, warps, stages)
    if ck.metadata.shared > MAX_SHARED[arch]:
        raise OutOfSharedMemory(f"needs {ck.metadata.shared} B of shared memory > {MAX_SHARED[arch]} B on sm_{arch}")
    regs, stack, local, mma = machine_code(ck)
    if stack or local:
        raise Spills(f"spills: {stack} B stack frame, {local} B local memory ({regs} registers)")
    if dtype != torch.float32 and name != "inv_norm":
        assert mma > 0, "no tensor-core instruction (HMMA / HGMMA) in the SASS"
    return f"shared={ck.metadata.shared:>6} B regs={regs:>3} mma={mma:>4}"


def cases(full):
    """(arch, dtype name, M, D, every tile shape?): the default set covers each kernel in each
    dtype, every tile shape for the dtypes training uses (bf16, fp32) at D=128, and an odd shape
    (M, D not multiples of 16: no divisibility specialisation, masked loads). ``--full``: every
    dtype, D and tile shape on sm_90, then sm_80 (A100), where spills are only reported: the
    tile shapes are tuned for the H100 / H200."""
    if full:
        for arch in (90, 80):
            for dt in DTYPES:
                for M, D in ((512, 128), (512, 256), (500, 7), (512, 2048)):
                    yield arch, dt, M, D, True
        return
    for dt in DTYPES:
        yield 90, dt, 512, 128, dt in ("bf16", "fp32")
        yield 90, dt, 500, 7, False
    yield 90, "bf16", 512, 256, False


def run_case(case) -> tuple[list, list, int]:
    """Compile every kernel (and tile shape) of one case: (printed lines, failures, kernels compiled)."""
    arch, dt, M, D, every_tile = case
    dtype = DTYPES[dt]
    lines, failures, n, fits = [], [], 0, {}
    for name, fn, args, consts, tiles in launcher_cases(dtype, M, D):
        for bm, bn, warps, stages in tiles if every_tile else tiles[:1]:
            tile = dict(BLOCK_M=bm, BLOCK_N=bn) if bm else {}
            label = f"{name} {bm}x{bn}/{warps}w{stages}s" if bm else name
            where = f"sm_{arch} {dt} M={M:<4} D={D:<5} {label:<26}"
            t = time.perf_counter()
            try:
                info = check(name, fn, args, {**consts, **tile}, arch, warps, stages, dtype)
            except OutOfSharedMemory as e:
                lines.append(f"big  {where} {e}")
                fits.setdefault(name, False)
                continue
            except Spills as e:
                if arch != 90:  # reported, not failed: the tiles are chosen for sm_90
                    lines.append(f"spill {where} {e}")
                    fits[name] = True  # it runs, only slower
                    continue
                failures.append(f"{where}: {e}")
                lines.append(f"FAIL {failures[-1]}")
                continue
            except Exception as e:  # report every failing case, not only the first
                failures.append(f"{where}: {type(e).__name__}: {str(e).strip().splitlines()[-1]}")
                lines.append(f"FAIL {failures[-1]}")
                continue
            n += 1
            fits[name] = True
            lines.append(f"ok   {where} {info} {time.perf_counter() - t:.1f}s")
    failures += [f"sm_{arch} {dt} M={M} D={D} {name}: no tile shape fits" for name, ok in fits.items() if not ok]
    return lines, failures, n


def main(full=False, workers=None):
    """Every case, compiled by ``workers`` processes side by side (default: the CPUs, at most 2;
    each compile is one core's work, and the cases are independent); printed in case order."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    failures, n, t0 = [], 0, time.perf_counter()
    print(f"triton {triton.__version__}")
    todo = list(cases(full))
    workers = workers or min(2, os.cpu_count() or 1)
    if workers > 1:  # spawned, not forked: torch's and triton's threads do not survive a fork
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(run_case, todo))
    else:
        results = map(run_case, todo)
    for lines, case_failures, case_n in results:
        print("\n".join(lines), flush=True)
        failures += case_failures
        n += case_n
    print(f"compiled {n} kernels in {time.perf_counter() - t0:.0f} s, {len(failures)} failed")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(full="--full" in sys.argv))
