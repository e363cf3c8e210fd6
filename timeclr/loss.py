"""The NT-Xent (SimCLR) contrastive loss over V ≥ 2 views: ``nt_xent`` and ``NTXentLoss``.

The (VN)×(VN) similarity matrix is never built: on CUDA a fused Triton kernel streams it tile by
tile (``timeclr.kernels.nt_xent_triton``), elsewhere a chunked PyTorch implementation does it a
slab at a time (``timeclr.kernels.nt_xent_chunked``). Both take raw embeddings, normalise them
on the fly, and save only per-row statistics for the backward.
"""
import math
import numbers
from types import ModuleType

import torch
import torch.distributed as dist
from torch import nn

from timeclr.kernels import nt_xent_chunked

REDUCTIONS = ("mean", "sum", "none")
BACKENDS = ("auto", "triton", "torch")


# ---------------------------------------------------------------------------------------------
# input checks: every message names the argument and what was wrong, never a wrong number
# ---------------------------------------------------------------------------------------------


def check_temperature(temperature) -> float:
    """Return ``temperature`` as a float after checking it is a finite number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a positive number, got {type(temperature).__name__} {temperature!r}")
    tau = float(temperature)
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return tau


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_tensor(name, z):
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32, float16, bfloat16 or float64), got {z.dtype}")


def _as_views(z1, z2) -> torch.Tensor:
    """Check the inputs and return them as one (V, N, D) tensor."""
    _check_tensor("z1" if z2 is not None else "z", z1)
    if z2 is None:
        if z1.dim() != 3:
            raise ValueError(
                f"nt_xent(z) expects z of shape (V, N, D): V >= 2 views of N items; got a {z1.dim()}-D tensor "
                f"of shape {tuple(z1.shape)}. For two views of shape (N, D) call nt_xent(z1, z2)."
            )
        z = z1
    else:
        _check_tensor("z2", z2)
        for name, t in (("z1", z1), ("z2", z2)):
            if t.dim() != 2:
                raise ValueError(f"nt_xent(z1, z2) expects {name} of shape (N, D), got shape {tuple(t.shape)}")
        if z1.shape != z2.shape:
            raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
        if z1.device != z2.device:
            raise ValueError(f"z1 and z2 must be on the same device, got {z1.device} and {z2.device}")
        if z1.dtype != z2.dtype:
            raise TypeError(f"z1 and z2 must have the same dtype, got {z1.dtype} and {z2.dtype}")
        z = torch.stack((z1, z2))
    V, N, D = z.shape
    if V < 2:
        raise ValueError(f"need at least 2 views of each item, got V={V} (shape {tuple(z.shape)})")
    if N < 2:
        raise ValueError(f"need at least 2 items per batch (one positive is no contrast), got N={N} (shape {tuple(z.shape)})")
    if D < 1:
        raise ValueError(f"embedding dimension must be >= 1, got shape {tuple(z.shape)}")
    return z


def _backend(name: str, z: torch.Tensor) -> ModuleType:
    """The module that implements inv_norm / forward / backward for this tensor."""
    if name == "torch":
        return nt_xent_chunked
    try:
        from timeclr.kernels import nt_xent_triton
    except ImportError as e:  # no triton wheel on this platform
        if name == "triton":
            raise RuntimeError(f"backend='triton' needs the triton package: {e}") from e
        return nt_xent_chunked
    usable = z.dtype in nt_xent_triton.SUPPORTED_DTYPES
    if name == "auto":
        return nt_xent_triton if (z.is_cuda and usable) else nt_xent_chunked
    if not usable:
        raise TypeError(f"backend='triton' supports float32, float16 and bfloat16, got {z.dtype}; use backend='torch'")
    if not z.is_cuda and not nt_xent_triton.interpreting():
        raise RuntimeError(
            f"backend='triton' needs a CUDA tensor (got device {z.device}); on CPU set TRITON_INTERPRET=1 "
            "before importing triton to run the kernel in Triton's interpreter, or use backend='torch'"
        )
    return nt_xent_triton


# ---------------------------------------------------------------------------------------------
# distributed helpers: plain collectives, the gradient is written by hand in the Function below
# ---------------------------------------------------------------------------------------------


def _world(gather_distributed: bool):
    if not gather_distributed:
        return 1, 0
    if not dist.is_available():
        raise RuntimeError("gather_distributed=True but torch.distributed is not available in this build of torch")
    if not dist.is_initialized():
        return 1, 0  # a single process: the local batch is the global batch
    return dist.get_world_size(), dist.get_rank()


def _all_gather(x: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0, rank-major."""
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


# ---------------------------------------------------------------------------------------------
# autograd
# ---------------------------------------------------------------------------------------------


def _normalize_backward(z, inv, dzhat):
    """∂z from ∂ẑ for ẑ = z / max(||z||, eps): inv · (∂ẑ − ẑ <ẑ, ∂ẑ>), no projection below eps."""
    zhat = z.to(dzhat.dtype) * inv[:, None].to(dzhat.dtype)
    proj = (zhat * dzhat).sum(1, keepdim=True)
    proj = torch.where(inv[:, None] < 1.0 / nt_xent_chunked.EPS, proj, torch.zeros_like(proj))
    return (dzhat - zhat * proj) * inv[:, None].to(dzhat.dtype)


class _NTXent(torch.autograd.Function):
    """Per-row NT-Xent losses of this rank's V·N rows, with negatives from all ``world`` ranks.

    The backward returns the gradient of Σ_r g_r L_r over *every* rank's rows (g is all-gathered)
    with respect to this rank's embeddings, so no gradient needs to travel back through the gather.
    """

    @staticmethod
    def forward(ctx, z, tau, n_items, impl, world, rank):
        vn = z.shape[0]  # z: (V·N, D), view-major
        z_all = _all_gather(z, world) if world > 1 else z  # (W·V·N, D), rank-major
        inv_all = impl.inv_norm(z_all)
        loss, lse = impl.forward(z_all, inv_all, rank * vn, vn, n_items, vn, tau)
        lse_all = _all_gather(lse, world) if world > 1 else lse
        ctx.save_for_backward(z, z_all, inv_all, lse_all)
        ctx.args = (tau, n_items, impl, world, rank)
        return loss

    @staticmethod
    def backward(ctx, g):
        z, z_all, inv_all, lse_all = ctx.saved_tensors
        tau, n_items, impl, world, rank = ctx.args
        vn = z.shape[0]
        g = g.to(lse_all.dtype).contiguous()
        g_all = _all_gather(g, world) if world > 1 else g
        dzhat = impl.backward(z_all, inv_all, lse_all, g_all, rank * vn, vn, n_items, vn, tau)
        inv = inv_all[rank * vn: (rank + 1) * vn]
        return _normalize_backward(z, inv, dzhat).to(z.dtype), None, None, None, None, None


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------


@torch.compiler.disable  # a graph break around the kernel launch, never a compile failure
def nt_xent(z1, z2=None, *, temperature=0.5, reduction="mean", backend="auto", gather_distributed=False):
    """NT-Xent (normalised-temperature cross entropy), the SimCLR loss, over V ≥ 2 views.

    All V·N embeddings are L2-normalised; with s_ij = <ẑ_i, ẑ_j>/τ, row i's loss is the
    logsumexp of s_ij over every j ≠ i minus the mean of s_ip over its V−1 positives (the other
    views of the same item). With V = 2 and ``reduction='mean'`` this is exactly SimCLR's loss
    averaged over the 2N rows (lightly's ``NTXentLoss`` without a memory bank).

    Args:
        z1: (N, D) embeddings of the first view, or (V, N, D) embeddings of all views when
            ``z2`` is omitted. float32, float16, bfloat16 (float64 on the torch backend).
        z2: (N, D) embeddings of the second view, same dtype and device as ``z1``.
        temperature: τ > 0; 0.5 by default, as ``NTXentLoss`` and lightly's. Typical values are
            0.05 to 0.5.
        reduction: 'mean' over all V·N rows, 'sum', or 'none' for per-row losses.
        backend: 'triton' (fused kernel: CUDA tensors, or CPU under TRITON_INTERPRET=1),
            'torch' (chunked PyTorch, any device) or 'auto' (Triton on CUDA, else torch).
        gather_distributed: under torch.distributed, take negatives from every rank's embeddings.
            All ranks must pass the same shapes. The returned value is then the loss of the
            global batch, and its gradient is scaled so that DDP's gradient *averaging* makes
            the same update as one process holding the whole global batch ('mean' and 'sum';
            with 'none' the rows are this rank's rows of the global-batch loss).

    Shape:
        - z1, z2: (N, D), or z1: (V, N, D)
        - output: scalar, or (V, N) with ``reduction='none'`` (fp32; fp64 for fp64 input)

    Examples:
        >>> z1, z2 = torch.randn(256, 128), torch.randn(256, 128)
        >>> loss = nt_xent(z1, z2, temperature=0.1)
        >>> z = torch.randn(3, 256, 128)  # three views
        >>> rows = nt_xent(z, temperature=0.2, reduction="none")  # (3, 256)
    """
    tau = check_temperature(temperature)
    _check_choice("reduction", reduction, REDUCTIONS)
    _check_choice("backend", backend, BACKENDS)
    z = _as_views(z1, z2)
    V, N, D = z.shape
    impl = _backend(backend, z)
    world, rank = _world(gather_distributed)

    rows = _NTXent.apply(z.reshape(V * N, D).contiguous(), tau, N, impl, world, rank)  # (V·N,)
    if reduction == "none":
        return rows.view(V, N)
    local = rows.sum() if reduction == "sum" else rows.mean()
    if world == 1:
        return local
    # The value: the global-batch loss. The gradient: c·∂local, which after DDP divides by W is
    # exactly the global batch's gradient (the backward already sums every rank's rows).
    total = local.detach().clone()
    dist.all_reduce(total)
    value = total if reduction == "sum" else total / world
    c = world if reduction == "sum" else 1
    return c * local + (value - c * local).detach()


class NTXentLoss(nn.Module):
    """NT-Xent (SimCLR) contrastive loss as a module, a drop-in for lightly's ``NTXentLoss``
    without a memory bank.

    The first three arguments are lightly's, in lightly's order and with lightly's defaults, so
    ``NTXentLoss(0.2, 0, True)`` means the same in both. With two views of shape (N, D) and
    ``reduction='mean'`` the value is lightly's: each of the 2N L2-normalised embeddings scored
    against the 2N − 1 others by cosine similarity / τ, cross-entropy with its other view as the
    target, averaged over the 2N rows. Beyond lightly: V ≥ 2 views in one (V, N, D) tensor, other
    reductions, and a choice of backend (see ``nt_xent``).

    Args:
        temperature: τ > 0, scales the logits by 1/τ. Default 0.5, lightly's; TimeCLR's training
            recipes set their own (``train.temperature``).
        memory_bank_size: must be 0. TimeCLR has no memory bank: the negatives come from the
            batch, and from every rank with ``gather_distributed=True``. Accepted only so that
            lightly's positional calls carry over.
        gather_distributed: under torch.distributed, take negatives from every rank's embeddings
            (see ``nt_xent``).
        reduction: keyword-only. 'mean' over all V·N rows, 'sum', or 'none' for per-row losses.
        backend: keyword-only. 'auto' (Triton on CUDA, else torch), 'triton' or 'torch'.

    Shape:
        - forward(z1, z2): (N, D) each; forward(z): (V, N, D) with V ≥ 2 views
        - output: scalar, or (V, N) with ``reduction='none'``

    Examples:
        >>> # as with lightly: two views of N items, negatives from the batch
        >>> loss_fn = NTXentLoss(temperature=0.5)
        >>> z1, z2 = torch.randn(64, 128), torch.randn(64, 128)
        >>> loss = loss_fn(z1, z2)
        >>>
        >>> # three views, negatives from every DDP rank, per-row losses
        >>> loss_fn = NTXentLoss(temperature=0.2, gather_distributed=True, reduction="none")
        >>> rows = loss_fn(torch.randn(3, 64, 128))  # (3, 64)

    Raises:
        ValueError: if ``memory_bank_size`` is not 0 (no memory bank), ``temperature`` is not
            a finite number > 0, ``reduction`` or ``backend`` is not one of its choices, or
            ``gather_distributed=True`` without torch.distributed.
        TypeError: if ``temperature`` is not a number.
    """

    def __init__(self, temperature: float = 0.5, memory_bank_size: int = 0, gather_distributed: bool = False, *,
                 reduction: str = "mean", backend: str = "auto"):
        super().__init__()
        self.temperature = check_temperature(temperature)
        is_int = isinstance(memory_bank_size, numbers.Integral) and not isinstance(memory_bank_size, bool)
        if not (is_int and memory_bank_size == 0):
            raise ValueError(
                f"memory_bank_size must be 0, got {memory_bank_size!r}: TimeCLR has no memory bank (negatives come "
                "from the batch, and from every rank with gather_distributed=True)"
            )
        _check_choice("reduction", reduction, REDUCTIONS)
        _check_choice("backend", backend, BACKENDS)
        if gather_distributed and not dist.is_available():
            raise ValueError("gather_distributed=True but torch.distributed is not available in this build of torch")
        self.gather_distributed = gather_distributed
        self.reduction = reduction
        self.backend = backend

    def forward(self, z1: torch.Tensor, z2: torch.Tensor | None = None) -> torch.Tensor:
        return nt_xent(z1, z2, temperature=self.temperature, reduction=self.reduction, backend=self.backend,
                       gather_distributed=self.gather_distributed)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, gather_distributed={self.gather_distributed}, "
                f"reduction={self.reduction!r}, backend={self.backend!r}")
