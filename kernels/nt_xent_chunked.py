"""NT-Xent in plain PyTorch, in row chunks: the backend for CPU tensors (and ``backend='torch'``).

Same math and the same interface as ``nt_xent_triton`` (see its docstring): rows are the
M = W·V·N embeddings of the global batch, the query rows a contiguous slice of whole rank blocks.
Only a (chunk, M) slab of the similarity matrix exists at a time, so extra memory is
O(M·chunk + M·D) instead of O(M²); the backward recomputes each slab rather than saving it.

When the query rows are all the rows (one process), s is symmetric and each pair of square
blocks (I ≤ J) is computed once and used for both block rows: the forward reads the slab's row
and column logsumexps, the backward adds W_IJ ẑ_J to block I and W_IJᵀ ẑ_I to block J. That is
2 instead of 3 (M×M×D) matmuls and half the exponentials. With negatives gathered from other
ranks the query rows are a slice, and the backends walk (chunk, M) row slabs instead.

Positives are handled in closed form, O(M·D), instead of as a mask on every slab: for row (v, n)
of a rank block the positives are the other views u ≠ v of item n, so with T_n = Σ_u ẑ_(u,n)::

    Σ_{p ∈ Pos} s_(v,n),p = <ẑ_(v,n), T_n − ẑ_(v,n)> / τ
"""
import torch

EPS = 1e-12  # the same eps as torch.nn.functional.normalize
CHUNK_BYTES = 2 << 20  # size of one slab or block of s; a few live at once (2 MiB: fastest on CPU, see docs/results.md)


def _compute_dtype(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _chunk_rows(m_cols: int, itemsize: int) -> int:
    return max(1, CHUNK_BYTES // (itemsize * m_cols))


def _square_blocks(m: int, itemsize: int):
    step = max(1, int((CHUNK_BYTES // itemsize) ** 0.5))
    return [slice(a, min(a + step, m)) for a in range(0, m, step)]


def _block_pairs(m: int, itemsize: int):
    """Each unordered pair of square blocks (I, J), I <= J, of an (m, m) matrix, once."""
    blocks = _square_blocks(m, itemsize)
    return [(bi, bj) for i, bi in enumerate(blocks) for bj in blocks[i:]]


def _lse_symmetric(zhat, tau):
    """lse_i = log Σ_{j≠i} exp(s_ij) for all rows, visiting each block pair of s once."""
    z_tau = zhat / tau
    lse = torch.full((zhat.shape[0],), float("-inf"), device=zhat.device, dtype=zhat.dtype)
    for bi, bj in _block_pairs(zhat.shape[0], zhat.element_size()):
        s = z_tau[bi] @ zhat[bj].T
        if bi == bj:
            s.fill_diagonal_(float("-inf"))
        torch.logaddexp(lse[bi], torch.logsumexp(s, dim=1), out=lse[bi])
        if bi != bj:
            torch.logaddexp(lse[bj], torch.logsumexp(s, dim=0), out=lse[bj])
    return lse


def _lse_rows(zhat, q, row_offset, tau):
    """lse for the query rows q = zhat[row_offset : ...] only, in (chunk, M) row slabs."""
    lse = torch.empty(q.shape[0], device=q.device, dtype=q.dtype)
    q_tau = q / tau
    step = _chunk_rows(zhat.shape[0], zhat.element_size())
    for a in range(0, q.shape[0], step):
        b = min(a + step, q.shape[0])
        s = q_tau[a:b] @ zhat.T  # (b−a, M) slab of s_ij
        s.diagonal(row_offset + a).fill_(float("-inf"))  # j = i is not a negative
        lse[a:b] = torch.logsumexp(s, dim=1)
    return lse


def _softmax_grad_symmetric(zhat, lse, g, tau):
    """Σ_j W_ij ẑ_j / τ for all rows, W_ij = g_i P_ij + g_j P_ji, each block pair once."""
    z_tau = zhat / tau
    dzhat = torch.zeros_like(zhat)
    for bi, bj in _block_pairs(zhat.shape[0], zhat.element_size()):
        s = z_tau[bi] @ zhat[bj].T
        if bi == bj:
            s.fill_diagonal_(float("-inf"))
        w = (s - lse[bi, None]).exp_().mul_(g[bi, None])  # g_i P_ij
        w += s.sub_(lse[None, bj]).exp_().mul_(g[None, bj])  # g_j P_ji
        dzhat[bi].addmm_(w, zhat[bj])
        if bi != bj:
            dzhat[bj].addmm_(w.T, zhat[bi])  # W is symmetric: block (J, I) is Wᵀ
    return dzhat / tau


def _softmax_grad_rows(zhat, q, lse_all, g_all, row_offset, tau):
    """The same for the query rows only, in (chunk, M) row slabs."""
    lse_q = lse_all[row_offset: row_offset + q.shape[0]]
    g_q = g_all[row_offset: row_offset + q.shape[0]]
    dzhat = torch.empty_like(q)
    q_tau = q / tau
    step = _chunk_rows(zhat.shape[0], zhat.element_size())
    for a in range(0, q.shape[0], step):
        b = min(a + step, q.shape[0])
        s = q_tau[a:b] @ zhat.T
        s.diagonal(row_offset + a).fill_(float("-inf"))
        w = (s - lse_q[a:b, None]).exp_().mul_(g_q[a:b, None])  # g_i P_ij
        w += s.sub_(lse_all[None, :]).exp_().mul_(g_all[None, :])  # g_j P_ji
        torch.mm(w, zhat, out=dzhat[a:b])
    return dzhat / tau


def inv_norm(z: torch.Tensor) -> torch.Tensor:
    """``1 / max(||z_i||, eps)`` for every row, in the compute dtype (fp32, or fp64 for fp64 input)."""
    return torch.linalg.vector_norm(z, dim=1, dtype=_compute_dtype(z)).clamp_min(EPS).reciprocal()


def _zhat(z, inv):
    return z.to(inv.dtype) * inv[:, None]


def forward(z, inv, row_offset, m_rows, n_items, vn, tau):
    """Per-row losses and logsumexps of rows ``z[row_offset : row_offset + m_rows]``."""
    with torch.autocast(z.device.type, enabled=False):
        zhat = _zhat(z, inv)  # (M, D)
        q = zhat[row_offset: row_offset + m_rows]  # (m_rows, D)

        # positives in closed form: q is whole rank blocks, (W_q, V, N, D)
        qb = q.view(-1, vn // n_items, n_items, q.shape[1])
        pos = (qb * (qb.sum(1, keepdim=True) - qb)).sum(-1).reshape(-1) / tau

        if row_offset == 0 and m_rows == zhat.shape[0]:
            lse = _lse_symmetric(zhat, tau)
        else:
            lse = _lse_rows(zhat, q, row_offset, tau)
        V = vn // n_items
        return lse - pos / (V - 1), lse


def backward(z, inv, lse_all, g_all, row_offset, m_rows, n_items, vn, tau):
    """∂out/∂ẑ for the query rows, given every row's lse and upstream gradient g.

    W_ij = g_i P_ij + g_j P_ji for j ≠ i, with P_ji = exp(s_ij − lse_j) by symmetry of s; the
    positive term −(g_i + g_j)/(V−1) is added in closed form afterwards.
    """
    with torch.autocast(z.device.type, enabled=False):
        zhat = _zhat(z, inv)
        q = zhat[row_offset: row_offset + m_rows]
        lse_all = lse_all.to(inv.dtype)
        g_all = g_all.to(inv.dtype)
        g_q = g_all[row_offset: row_offset + m_rows]
        if row_offset == 0 and m_rows == zhat.shape[0]:
            dzhat = _softmax_grad_symmetric(zhat, lse_all, g_all, tau)
        else:
            dzhat = _softmax_grad_rows(zhat, q, lse_all, g_all, row_offset, tau)

        # positive term, closed form over each rank block: (W_q, V, N, D)
        V = vn // n_items
        qb = q.view(-1, V, n_items, q.shape[1])
        gb = g_q.view(-1, V, n_items, 1)
        t = qb.sum(1, keepdim=True)  # Σ_u ẑ_u
        gt = (gb * qb).sum(1, keepdim=True)  # Σ_u g_u ẑ_u
        pos_grad = gb * (t - qb) + (gt - gb * qb)  # Σ_{u≠v} (g_v + g_u) ẑ_u
        return dzhat - pos_grad.reshape(m_rows, -1) / ((V - 1) * tau)
