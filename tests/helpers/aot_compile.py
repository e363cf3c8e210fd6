"""Compile the NT-Xent Triton kernels for NVIDIA GPUs ahead of time, on a machine without one.

Triton's CPU interpreter (what the other tests use without a GPU) does not check what only the
GPU compiler checks: tl.dot shapes and operand dtypes, layouts, shared memory. This script runs
the real compiler (down to cubin, with the ptxas bundled in triton's wheel) for sm_80 and sm_90,
every input dtype and several D, with exactly the tile sizes the launchers pick. By default: sm_90
(H100/H200), every autotuner tile shape at D=128 and the first at other D, about 1.5 min on 2
cores; ``--full`` adds sm_80 and every tile shape at every D (about 7 min). It must run in a
process where TRITON_INTERPRET is unset (see test_kernel_compiles.py). Exit code 1 on a failure.
"""
import os
import sys
import time

assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "run without TRITON_INTERPRET"

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from timeclr.kernels import nt_xent_triton as K  # noqa: E402

# Largest shared memory per block in bytes (CUDA occupancy tables); Triton checks it only at launch.
MAX_SHARED = {80: 166912, 90: 232448}
TRITON_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


class OutOfSharedMemory(RuntimeError):
    pass


def compile_for_cuda(fn, types, constexprs, arch, num_warps, num_stages):
    sig = {name: ("constexpr" if name in constexprs else types[name]) for name in fn.arg_names}
    ck = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs),
                        target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps, "num_stages": num_stages})
    if ck.metadata.shared > MAX_SHARED[arch]:
        raise OutOfSharedMemory(f"needs {ck.metadata.shared} B of shared memory > {MAX_SHARED[arch]} B on sm_{arch}")
    assert ck.asm["cubin"], "no cubin"
    return ck


def kernel_cases(dtype, D, all_tiles=True):
    """(name, kernel, argument types, constexprs, num_warps, num_stages): every tile shape the
    autotuner may pick, with the BLOCK_K / BLOCK_DV / flags the launchers pass."""
    dt = "*" + TRITON_DTYPE[dtype]
    ints = dict.fromkeys(["M", "M_rows", "row_offset", "D", "N", "VN", "stride_zm", "stride_dm"], "i32")
    floats = dict(inv_tau="fp32", inv_vm1="fp32")
    k = K._k_tiles(D, dtype)
    flags = K._flags(dtype, D, k["BLOCK_K"])
    yield ("inv_norm", K._inv_norm_kernel, dict(Z=dt, INV="*fp32", M="i32", D="i32", stride_zm="i32"),
           K._inv_norm_blocks(D), 4, 2)
    for bm, bn, warps, stages in K.GPU_TILES if all_tiles else K.GPU_TILES[:1]:
        tiles = dict(BLOCK_M=bm, BLOCK_N=bn)
        yield (f"forward {bm}x{bn}/{warps}w{stages}s", K._nt_xent_fwd_kernel,
               dict(Z=dt, INV="*fp32", LOSS="*fp32", LSE="*fp32", **ints, **floats),
               {**tiles, "BLOCK_K": k["BLOCK_K"], **flags}, warps, stages)
        yield (f"backward {bm}x{bn}/{warps}w{stages}s", K._nt_xent_bwd_kernel,
               dict(Z=dt, INV="*fp32", LSE="*fp32", G="*fp32", DZHAT="*fp32", **ints, **floats),
               {**tiles, **k, **flags}, warps, stages)


def main(full=False):
    """A compile error anywhere fails. A tile shape too big for shared memory is only reported,
    since the autotuner drops it at run time, but each kernel must fit with some tile shape."""
    failures, n = [], 0
    for arch in (90, 80) if full else (90,):
        for dtype in TRITON_DTYPE:
            for D in (7, 128, 256, 2048):
                fits = {}
                for name, fn, types, constexprs, warps, stages in kernel_cases(dtype, D, full or D == 128):
                    kind = name.split()[0]
                    where = f"sm_{arch} {TRITON_DTYPE[dtype]} D={D:<5} {name:<28}"
                    t = time.perf_counter()
                    try:
                        ck = compile_for_cuda(fn, types, constexprs, arch, warps, stages)
                    except OutOfSharedMemory as e:
                        print(f"big  {where} {e}", flush=True)
                        fits.setdefault(kind, False)
                        continue
                    except Exception as e:  # report every failing case, not only the first
                        failures.append(f"{where}: {type(e).__name__}: {e}")
                        print("FAIL", failures[-1], flush=True)
                        continue
                    n += 1
                    fits[kind] = True
                    print(f"ok   {where} shared={ck.metadata.shared:>6} B {time.perf_counter() - t:.2f}s", flush=True)
                failures += [f"sm_{arch} {TRITON_DTYPE[dtype]} D={D} {kind}: no tile shape fits"
                             for kind, ok in fits.items() if not ok]
    print(f"compiled {n} kernels, {len(failures)} failed")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(full="--full" in sys.argv))
