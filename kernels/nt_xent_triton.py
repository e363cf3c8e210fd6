"""Fused NT-Xent (normalised-temperature cross entropy) in Triton, forward and backward.

Math
----
Rows are the M = W·V·N embeddings of a global batch: W ranks, V views, N items per rank, laid out
rank-major, then view-major: global row ``g = w·VN + v·N + n`` holds item ``item(g) = w·N + n``.
With ẑ_i = z_i / max(||z_i||, eps) and temperature τ::

    s_ij  = <ẑ_i, ẑ_j> / τ
    lse_i = log Σ_{j≠i} exp(s_ij)                       (the diagonal is excluded, not masked by a constant)
    L_i   = lse_i − 1/(V−1) · Σ_{p ∈ Pos(i)} s_ip        Pos(i) = {j ≠ i : item(j) = item(i)}

A program owns BLOCK_M consecutive *query* rows and streams every column tile of Z through
on-chip memory, keeping an online logsumexp (running max m and running sum l, as in
FlashAttention). Nothing of size M×M is ever written: the only extra memory is the per-row
inverse norm and logsumexp, O(M). Query rows are a contiguous slice
``[row_offset, row_offset + M_rows)`` of the columns: all of them in one process, this rank's
rows when negatives are gathered from every rank.

The normalisation is fused: Z is read raw and ``s_ij = (z_i·z_j) · inv_i · inv_j / τ`` with
``inv = 1/max(||z||, eps)`` computed once by ``_inv_norm_kernel``.

Backward math
-------------
With upstream gradient g_i = ∂out/∂L_i and P_ij = exp(s_ij − lse_i) for j ≠ i (0 on the diagonal)::

    ∂out/∂s_ij = g_i · (P_ij − Pos_ij/(V−1))
    ∂out/∂ẑ_i  = 1/τ · Σ_j W_ij ẑ_j,    W_ij = g_i P_ij + g_j P_ji − (g_i + g_j) Pos_ij/(V−1)

s is symmetric, so P_ji = exp(s_ij − lse_j): one row-parallel pass that also reads every column's
lse and g gives the whole gradient, without atomics. W is symmetric too. The backward of the
normalisation, ∂z = inv · (∂ẑ − ẑ <ẑ, ∂ẑ>), is an O(M·D) epilogue done by the caller.

To keep fp16 from underflowing (g_i is ~1/M and P_ij ~1/M), the kernel receives g already divided
by max|g| (W then lies in [−2, 2]) and multiplies ẑ_j = z_j·inv_j in fp32 before casting both
operands of the second dot to the input dtype; the caller multiplies by max|g| afterwards.
"""
import contextlib
import os

import torch
import triton
import triton.language as tl

EPS = 1e-12  # the same eps as torch.nn.functional.normalize

# ---------------------------------------------------------------------------------------------
# inverse row norms
# ---------------------------------------------------------------------------------------------


@triton.jit
def _inv_norm_kernel(
    Z,  # (M, D) input embeddings, any float dtype; row stride stride_zm, unit column stride
    INV,  # (M,) fp32 output: 1 / max(||z_i||, EPS)
    M,
    D,
    stride_zm,
    EPS_: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    sq = tl.zeros([BLOCK_M], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = (rows[:, None] < M) & (cols[None, :] < D)
        x = tl.load(Z + rows[:, None] * stride_zm + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        sq += tl.sum(x * x, axis=1)
    tl.store(INV + rows, 1.0 / tl.maximum(tl.sqrt(sq), EPS_), mask=rows < M)


# ---------------------------------------------------------------------------------------------
# shared tile helpers
# ---------------------------------------------------------------------------------------------


@triton.jit
def _mma(a, b, acc, IEEE: tl.constexpr, UPCAST: tl.constexpr):
    """acc + a @ b in fp32; exact fp32 products (no TF32) when IEEE."""
    if UPCAST:  # Triton's CPU interpreter multiplies bf16 tiles as their raw uint16 bits
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def _dot_tile(Z, q, rows, row_ok, cols, col_ok, D, stride_zm,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
              SINGLE_K: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr):
    """Raw dot products z_rows · z_colsᵀ of one (BLOCK_M, BLOCK_N) tile, accumulated in fp32.

    With SINGLE_K the whole row tile ``q`` (BLOCK_M, BLOCK_K >= D) was loaded once by the caller;
    otherwise D is walked in BLOCK_K slices.
    """
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    if SINGLE_K:
        offs_k = tl.arange(0, BLOCK_K)
        k = tl.load(Z + cols[:, None] * stride_zm + offs_k[None, :],
                    mask=col_ok[:, None] & (offs_k[None, :] < D), other=0.0)
        acc = _mma(q, tl.trans(k), acc, IEEE, UPCAST)
    else:
        for k0 in range(0, D, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            kmask = offs_k[None, :] < D
            qk = tl.load(Z + rows[:, None] * stride_zm + offs_k[None, :], mask=row_ok[:, None] & kmask, other=0.0)
            k = tl.load(Z + cols[:, None] * stride_zm + offs_k[None, :], mask=col_ok[:, None] & kmask, other=0.0)
            acc = _mma(qk, tl.trans(k), acc, IEEE, UPCAST)
    return acc


@triton.jit
def _load_row_tile(Z, rows, row_ok, D, stride_zm, BLOCK_K: tl.constexpr, SINGLE_K: tl.constexpr):
    """The query tile, loaded once per program when D fits one BLOCK_K (else a dummy)."""
    offs_k = tl.arange(0, BLOCK_K)
    if SINGLE_K:
        q = tl.load(Z + rows[:, None] * stride_zm + offs_k[None, :],
                    mask=row_ok[:, None] & (offs_k[None, :] < D), other=0.0)
    else:
        q = tl.zeros([1, BLOCK_K], dtype=Z.dtype.element_ty)
    return q


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------


@triton.jit
def _nt_xent_fwd_kernel(
    Z,  # (M, D) raw embeddings of the whole (gathered) batch, input dtype; row stride stride_zm
    INV,  # (M,) fp32 inverse norms of every row of Z
    LOSS,  # (M_rows,) fp32 output: L_i for the query rows
    LSE,  # (M_rows,) fp32 output: lse_i for the query rows (kept for the backward)
    M,  # rows of Z (columns of the implicit similarity matrix)
    M_rows,  # number of query rows, Z[row_offset : row_offset + M_rows]
    row_offset,
    D,
    N,  # items per rank
    VN,  # rows per rank (V·N)
    stride_zm,
    inv_tau,  # 1/τ
    inv_vm1,  # 1/(V−1)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SINGLE_K: tl.constexpr,  # D <= BLOCK_K: load the query tile once, outside the column loop
    IEEE: tl.constexpr,  # fp32 input: exact fp32 products, as torch's default matmul
    UPCAST: tl.constexpr,  # interpreter + bf16 only: multiply in fp32 (see _mma)
):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = offs_m < M_rows
    rows = row_offset + offs_m
    item_r = (rows // VN) * N + rows % N
    scale_r = tl.load(INV + rows, mask=row_ok, other=0.0) * inv_tau
    q = _load_row_tile(Z, rows, row_ok, D, stride_zm, BLOCK_K, SINGLE_K)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max of s_ij
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running Σ exp(s_ij − m_i)
    pos_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # Σ over positives of s_ip
    for start_n in range(0, M, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        col_ok = cols < M
        s = _dot_tile(Z, q, rows, row_ok, cols, col_ok, D, stride_zm,
                      BLOCK_M, BLOCK_N, BLOCK_K, SINGLE_K, IEEE, UPCAST)
        s = s * scale_r[:, None] * tl.load(INV + cols, mask=col_ok, other=0.0)[None, :]

        item_c = (cols // VN) * N + cols % N
        off_diag = (rows[:, None] != cols[None, :]) & col_ok[None, :]
        pos = off_diag & (item_r[:, None] == item_c[None, :])
        pos_i += tl.sum(tl.where(pos, s, 0.0), axis=1)

        # online logsumexp over j ≠ i; the -inf never meets another -inf in a subtraction
        s = tl.where(off_diag, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        l_i = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), axis=1)
        m_i = m_new

    lse = m_i + tl.log(l_i)
    tl.store(LSE + offs_m, lse, mask=row_ok)
    tl.store(LOSS + offs_m, lse - pos_i * inv_vm1, mask=row_ok)


# ---------------------------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------------------------


@triton.jit
def _nt_xent_bwd_kernel(
    Z,  # (M, D) raw embeddings of the whole batch, input dtype; row stride stride_zm
    INV,  # (M,) fp32 inverse norms
    LSE,  # (M,) fp32 logsumexp of *every* row (all ranks' rows when gathered)
    G,  # (M,) fp32 upstream gradient of every row, divided by max|g|
    DZHAT,  # (M_rows, D) fp32 output: ∂out/∂ẑ_i / max|g| for the query rows; row stride stride_dm
    M,
    M_rows,
    row_offset,
    D,
    N,
    VN,
    stride_zm,
    stride_dm,
    inv_tau,
    inv_vm1,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_DV: tl.constexpr,  # width of the slice of D this program writes (grid axis 1)
    SINGLE_K: tl.constexpr,  # D <= BLOCK_K: load the query tile once, outside the column loop
    IEEE: tl.constexpr,  # fp32 input: exact fp32 products, as torch's default matmul
    UPCAST: tl.constexpr,  # interpreter + bf16 only: multiply in fp32 (see _mma)
):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dv = tl.program_id(1) * BLOCK_DV + tl.arange(0, BLOCK_DV)
    row_ok = offs_m < M_rows
    rows = row_offset + offs_m
    item_r = (rows // VN) * N + rows % N
    scale_r = tl.load(INV + rows, mask=row_ok, other=0.0) * inv_tau
    lse_r = tl.load(LSE + rows, mask=row_ok, other=0.0)
    g_r = tl.load(G + rows, mask=row_ok, other=0.0)
    q = _load_row_tile(Z, rows, row_ok, D, stride_zm, BLOCK_K, SINGLE_K)

    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    for start_n in range(0, M, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        col_ok = cols < M
        inv_c = tl.load(INV + cols, mask=col_ok, other=0.0)
        s = _dot_tile(Z, q, rows, row_ok, cols, col_ok, D, stride_zm,
                      BLOCK_M, BLOCK_N, BLOCK_K, SINGLE_K, IEEE, UPCAST)
        s = s * scale_r[:, None] * inv_c[None, :]

        item_c = (cols // VN) * N + cols % N
        off_diag = (rows[:, None] != cols[None, :]) & col_ok[None, :] & row_ok[:, None]
        pos = off_diag & (item_r[:, None] == item_c[None, :])
        s = tl.where(off_diag, s, float("-inf"))
        lse_c = tl.load(LSE + cols, mask=col_ok, other=0.0)
        g_c = tl.load(G + cols, mask=col_ok, other=0.0)
        p_rc = tl.exp(s - lse_r[:, None])  # P_ij
        p_cr = tl.exp(s - lse_c[None, :])  # P_ji, by symmetry of s
        w = g_r[:, None] * p_rc + g_c[None, :] * p_cr
        w -= tl.where(pos, (g_r[:, None] + g_c[None, :]) * inv_vm1, 0.0)

        # ẑ_j in fp32 first, so the low-precision operand lies in [-1, 1]
        zc = tl.load(Z + cols[:, None] * stride_zm + offs_dv[None, :],
                     mask=col_ok[:, None] & (offs_dv[None, :] < D), other=0.0)
        zc = (zc.to(tl.float32) * inv_c[:, None]).to(Z.dtype.element_ty)
        acc = _mma(w.to(Z.dtype.element_ty), zc, acc, IEEE, UPCAST)

    acc = acc * inv_tau
    tl.store(DZHAT + offs_m[:, None] * stride_dm + offs_dv[None, :], acc,
             mask=row_ok[:, None] & (offs_dv[None, :] < D))


# ---------------------------------------------------------------------------------------------
# host launchers
# ---------------------------------------------------------------------------------------------

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# Tile shapes (BLOCK_M, BLOCK_N, num_warps, num_stages) the autotuner tries on a GPU, once per
# (M, M_rows, D, dtype), per kernel and input width. Every one compiles for sm_90 with no stack
# frame (no spills) and within shared memory: tests/helpers/aot_compile.py compiles each as the
# runtime would and reads registers and stack from the cubin (D = 7, 128, 256, 2048). What spilled
# and was left out (sm_90, Triton 3.9): 16-bit backward at 128x32/4w, 64x128/8w, 128x128/8w and
# 32x64/4w (D=7); fp32 forward at 128x128/8w, 64x128/8w, 128x32/8w; fp32 backward at 128x64 and
# 64x64 with 4 warps, 128x128/8w; fp32 64x32/4w with Triton 3.6 (the GPU machine's), forward and
# backward (tests/helpers/aot_compile_with.sh 3.6.0). Tuned for sm_90 only: on sm_80 some spill.
GPU_TILES = {
    ("forward", "16-bit"): [(128, 64, 8, 2), (128, 64, 4, 3), (128, 128, 8, 2), (64, 64, 4, 3), (128, 32, 4, 3),
                            (256, 32, 8, 2)],
    ("backward", "16-bit"): [(128, 64, 8, 2), (64, 64, 8, 2), (128, 32, 8, 2), (64, 32, 4, 3), (64, 64, 4, 2)],
    ("forward", "fp32"): [(128, 64, 8, 2), (64, 64, 4, 3), (128, 32, 4, 2), (256, 32, 8, 2)],
    ("backward", "fp32"): [(128, 32, 8, 2), (64, 64, 8, 2), (32, 64, 4, 3), (64, 128, 8, 2)],
}
# The interpreter runs one program at a time in numpy: small tiles, no tuning.
INTERPRETER_TILES = dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1)


def _k_tiles(D: int, dtype: torch.dtype):
    """BLOCK_K (the slice of D per dot; all of D when it fits, so the query tile loads once) and
    BLOCK_DV (the slice of D one backward program writes).

    fp32 takes 32-wide slices: its exact (IEEE, no tensor core) dot keeps whole operand tiles in
    registers, and at BLOCK_K = 128 / BLOCK_DV = 64 every tile shape the autotuner tries spills
    (sm_90: 255 registers and an 816-920 B stack frame at 128x64; tests/helpers/aot_compile.py).
    16-bit inputs run on tensor cores and take all of D up to 128 in one slice; past 128 the
    backward's (BLOCK_M, BLOCK_DV) fp32 accumulator and the query tile no longer fit in registers
    beside the score tiles (D=256 and 2048 spill at BLOCK_DV = 128), so both go to 64."""
    pow2_d = max(16, triton.next_power_of_2(D))
    if interpreting():
        return dict(BLOCK_K=min(pow2_d, 64), BLOCK_DV=min(pow2_d, 64))
    if dtype == torch.float32:
        return dict(BLOCK_K=min(pow2_d, 32), BLOCK_DV=min(pow2_d, 32))
    width = pow2_d if pow2_d <= 128 else 64
    return dict(BLOCK_K=width, BLOCK_DV=width)


def _flags(dtype, D, BLOCK_K):
    return dict(SINGLE_K=BLOCK_K >= D, IEEE=dtype == torch.float32,
                UPCAST=interpreting() and dtype == torch.bfloat16)


def _width(dtype) -> str:
    return "fp32" if dtype == torch.float32 else "16-bit"


def _autotuned(kernel, tiles):
    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=st) for m, n, w, st in tiles]
    return triton.autotune(configs=configs, key=["M", "M_rows", "D"])(kernel)


_KERNELS = {"forward": _nt_xent_fwd_kernel, "backward": _nt_xent_bwd_kernel}
_TUNED = {(kind, width): _autotuned(_KERNELS[kind], tiles) for (kind, width), tiles in GPU_TILES.items()}


_fixed = {}  # kind -> (BLOCK_M, BLOCK_N, num_warps, num_stages) while fixed_tiles() is active


@contextlib.contextmanager
def fixed_tiles(forward=None, backward=None):
    """Launch with these tile shapes instead of autotuning (or the interpreter's small tiles),
    e.g. to check each of the autotuner's candidates against a reference."""
    saved = dict(_fixed)
    _fixed.update({k: t for k, t in (("forward", forward), ("backward", backward)) if t is not None})
    try:
        yield
    finally:
        _fixed.clear()
        _fixed.update(saved)


def _autotune() -> bool:
    """False under TIMECLR_AUTOTUNE=0: the first tile shape only, compiled once per dtype and D
    rather than tuned per batch shape; for correctness runs, where tuning would cost minutes."""
    return os.environ.get("TIMECLR_AUTOTUNE", "1") != "0"


def _launch(kernel, tuned, rows, d_slices, args, consts):
    """Run ``kernel`` over row blocks (x D slices): ``tuned`` (its autotuned wrapper) on a GPU,
    fixed small tiles when interpreting, or the tile ``fixed_tiles`` gives."""
    kind = "forward" if kernel is _nt_xent_fwd_kernel else "backward"
    tile = _fixed.get(kind)
    if tile is None and not interpreting() and not _autotune():
        c = tuned.configs[0]
        tile = (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages)
    if tile is not None:
        bm, bn, warps, stages = tile
        kernel[(triton.cdiv(rows, bm), d_slices)](*args, **consts, BLOCK_M=bm, BLOCK_N=bn, num_warps=warps,
                                                  num_stages=stages)
    elif interpreting():
        grid = (triton.cdiv(rows, INTERPRETER_TILES["BLOCK_M"]), d_slices)
        kernel[grid](*args, **consts, **INTERPRETER_TILES)
    else:
        tuned[lambda meta: (triton.cdiv(rows, meta["BLOCK_M"]), d_slices)](*args, **consts)


def _inv_norm_blocks(D: int):
    return dict(EPS_=EPS, BLOCK_M=16, BLOCK_D=min(128, max(16, triton.next_power_of_2(D))))


def inv_norm(z: torch.Tensor) -> torch.Tensor:
    """fp32 ``1 / max(||z_i||, eps)`` for every row of a contiguous (M, D) tensor."""
    M, D = z.shape
    inv = torch.empty(M, device=z.device, dtype=torch.float32)
    cfg = _inv_norm_blocks(D)
    _inv_norm_kernel[(triton.cdiv(M, cfg["BLOCK_M"]),)](z, inv, M, D, z.stride(0), **cfg)
    return inv


def forward(z, inv, row_offset, m_rows, n_items, vn, tau):
    """Per-row losses and logsumexps of rows ``z[row_offset : row_offset + m_rows]`` (fp32)."""
    M, D = z.shape
    V = vn // n_items
    loss = torch.empty(m_rows, device=z.device, dtype=torch.float32)
    lse = torch.empty(m_rows, device=z.device, dtype=torch.float32)
    k = _k_tiles(D, z.dtype)
    _launch(_nt_xent_fwd_kernel, _TUNED["forward", _width(z.dtype)], m_rows, 1,
            (z, inv, loss, lse, M, m_rows, row_offset, D, n_items, vn, z.stride(0), 1.0 / tau, 1.0 / (V - 1)),
            dict(BLOCK_K=k["BLOCK_K"], **_flags(z.dtype, D, k["BLOCK_K"])))
    return loss, lse


def backward(z, inv, lse_all, g_all, row_offset, m_rows, n_items, vn, tau):
    """fp32 ∂out/∂ẑ for the query rows, given every row's lse and upstream gradient g."""
    M, D = z.shape
    V = vn // n_items
    # Dividing g by its largest magnitude keeps W in [-2, 2] for the low-precision dot.
    g_max = g_all.abs().amax().clamp_min(torch.finfo(torch.float32).tiny)
    g_unit = (g_all / g_max).contiguous()
    dzhat = torch.empty(m_rows, D, device=z.device, dtype=torch.float32)
    k = _k_tiles(D, z.dtype)
    _launch(_nt_xent_bwd_kernel, _TUNED["backward", _width(z.dtype)], m_rows, triton.cdiv(D, k["BLOCK_DV"]),
            (z, inv, lse_all, g_unit, dzhat, M, m_rows, row_offset, D, n_items, vn, z.stride(0), dzhat.stride(0),
             1.0 / tau, 1.0 / (V - 1)),
            dict(**k, **_flags(z.dtype, D, k["BLOCK_K"])))
    return dzhat.mul_(g_max)
