"""NT-Xent: both backends against float64 references, over shapes, dtypes, temperatures and reductions.

The Triton kernel itself runs here too: on a machine without a GPU, conftest.py switches on
Triton's CPU interpreter.
"""
import inspect
import math

import pytest
import torch

from tests.helpers.reference import closed_form_aligned, nt_xent_rows_f64, simclr_f64
from timeclr import NTXentLoss, nt_xent
from timeclr.kernels import nt_xent_chunked

# On a GPU machine the kernels get CUDA tensors; without one, CPU tensors and the interpreter.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = ["torch", "triton"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (V, N, D): odd N and D, D above one tile (130) and above 2 tiles of K (200), V > 2
SHAPES = [(2, 2, 1), (2, 3, 5), (2, 17, 33), (3, 11, 64), (4, 5, 130), (2, 40, 16), (5, 3, 200)]
TEMPERATURES = [0.01, 0.07, 0.5, 1.0]
REDUCTIONS = ["mean", "sum", "none"]

# Tolerances relative to the largest reference magnitude. The reference sees the same rounded
# inputs (z.double()), so these measure our arithmetic only: fp32 accumulation everywhere, and
# for fp16/bf16 the second backward dot takes its operands in the input dtype.
LOSS_TOL = {torch.float32: 2e-6, torch.float16: 2e-6, torch.bfloat16: 2e-6, torch.float64: 1e-12}
GRAD_TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float64: 1e-12}


def assert_close_rel(actual, expected, tol, what):
    """|actual − expected| <= tol · max|expected| elementwise, with a message naming the worst entry."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    scale = expected.abs().max().clamp_min(1e-6)  # D=1 has an exactly-zero gradient
    err = (actual - expected).abs()
    worst = int(err.argmax())
    assert err.max() <= tol * scale, (
        f"{what}: max |diff| {err.max():.3e} > {tol:.1e} x {scale:.3e} at flat index {worst} "
        f"(got {actual.flatten()[worst]:.8g}, want {expected.flatten()[worst]:.8g}); shape {tuple(expected.shape)}"
    )


def reduce_ref(rows, reduction):
    return {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]


def check_against_reference(V, N, D, dtype, tau, reduction, backend, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    z = (scale * torch.randn(V, N, D, generator=g)).to(dtype)
    upstream = torch.rand(V, N, generator=g) + 0.5 if reduction == "none" else torch.tensor(0.37)

    z_ours = z.to(DEVICE, copy=True).requires_grad_()
    out = nt_xent(z_ours, temperature=tau, reduction=reduction, backend=backend)
    (out * upstream.to(DEVICE)).sum().backward()

    z_ref = z.double().requires_grad_()
    ref = reduce_ref(nt_xent_rows_f64(z_ref, tau), reduction)
    (ref * upstream.double()).sum().backward()

    case = f"backend={backend} V={V} N={N} D={D} {dtype} tau={tau} reduction={reduction}"
    assert out.shape == ref.shape, f"{case}: output shape {tuple(out.shape)}, want {tuple(ref.shape)}"
    assert z_ours.grad.dtype == dtype, f"{case}: gradient dtype {z_ours.grad.dtype}"
    assert torch.isfinite(out).all() and torch.isfinite(z_ours.grad).all(), f"{case}: non-finite output or gradient"
    assert_close_rel(out, ref, LOSS_TOL[dtype], f"{case} loss")
    assert_close_rel(z_ours.grad, z_ref.grad, GRAD_TOL[dtype], f"{case} grad")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "V%dN%dD%d" % s)
def test_matches_float64_reference(shape, dtype, backend):
    i = SHAPES.index(shape)
    # temperatures and reductions rotate through the grid so every pair of them meets some shape
    tau = TEMPERATURES[i % len(TEMPERATURES)]
    reduction = REDUCTIONS[i % len(REDUCTIONS)]
    check_against_reference(*shape, dtype, tau, reduction, backend, seed=i)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tau", TEMPERATURES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_temperatures_and_reductions(tau, reduction, backend):
    check_against_reference(3, 7, 24, torch.float32, tau, reduction, backend, seed=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_extremes_stay_finite(dtype, backend):
    """τ = 0.01 makes logits of ±100; large and tiny input norms must not overflow or underflow."""
    for scale in (1e-3, 200.0):
        check_against_reference(2, 9, 40, dtype, 0.01, "mean", backend, seed=2, scale=scale)


def test_float64_on_torch_backend_and_gradcheck():
    check_against_reference(3, 5, 7, torch.float64, 0.3, "none", "torch")
    z = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: nt_xent(t, temperature=0.5, reduction="none", backend="torch"), (z,))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("V,N", [(2, 4), (3, 5), (4, 8)])
def test_closed_form(V, N, backend):
    tau = 0.5  # a loss of order 1: at small τ it is a tiny difference of two ~1/τ terms
    basis = torch.eye(16)[:N] * torch.arange(1, N + 1)[:, None]  # orthogonal items, different norms
    z = basis.expand(V, N, 16).clone().to(DEVICE)
    rows = nt_xent(z, temperature=tau, reduction="none", backend=backend)
    want = torch.full((V, N), closed_form_aligned(V, N, tau), dtype=torch.float64)
    assert_close_rel(rows, want, 2e-6, f"closed form V={V} N={N} backend={backend}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_view_call_equals_simclr_cross_entropy(backend):
    torch.manual_seed(3)
    z1, z2 = torch.randn(13, 31), torch.randn(13, 31)
    ours = nt_xent(z1.to(DEVICE), z2.to(DEVICE), temperature=0.2, backend=backend)
    assert_close_rel(ours, simclr_f64(z1, z2, 0.2), 2e-6, "two-view mean vs SimCLR cross entropy")
    stacked = nt_xent(torch.stack([z1, z2]).to(DEVICE), temperature=0.2, backend=backend)
    assert_close_rel(stacked, ours, 1e-7, "nt_xent(z1, z2) vs nt_xent(stack)")


def test_module_matches_function_and_validates_up_front():
    torch.manual_seed(4)
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    crit = NTXentLoss(temperature=0.3, reduction="sum")
    assert_close_rel(crit(z1, z2), nt_xent(z1, z2, temperature=0.3, reduction="sum"), 0, "module vs function")
    assert "temperature=0.3" in repr(crit)
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        NTXentLoss(reduction="avg")


# ---------------------------------------------------------------------------------------------
# lightly's NTXentLoss: the same signature, defaults and value (no memory bank)
# ---------------------------------------------------------------------------------------------

LIGHTLY_DEFAULT_TAU = 0.5  # lightly.loss.NTXentLoss(temperature=0.5, memory_bank_size=0, gather_distributed=False)


def lightly_formula_f64(z1, z2, tau):
    """Lightly's NT-Xent for two views, written out from its description, in float64: normalise
    both views, concatenate them to 2N rows; each row's logits are its cosine similarities with
    the 2N − 1 other rows, over τ, and its target is the same item's other view; the loss is the
    cross entropy averaged over all 2N rows."""
    rows = torch.cat([z1, z2]).double()
    rows = rows / rows.norm(dim=1, keepdim=True)
    n2 = rows.shape[0]
    losses = []
    for i in range(n2):
        others = [j for j in range(n2) if j != i]
        logits = torch.stack([torch.dot(rows[i], rows[j]) for j in others]) / tau
        target = others.index((i + n2 // 2) % n2)
        losses.append(-torch.log_softmax(logits, 0)[target])
    return torch.stack(losses).mean()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tau", [LIGHTLY_DEFAULT_TAU, 0.1])
def test_two_views_match_lightlys_formula(tau, backend):
    g = torch.Generator().manual_seed(9)
    z1, z2 = torch.randn(9, 17, generator=g), 3 * torch.randn(9, 17, generator=g)
    want = lightly_formula_f64(z1, z2, tau)
    got = NTXentLoss(temperature=tau, backend=backend)(z1.to(DEVICE), z2.to(DEVICE))
    assert_close_rel(got, want, 2e-6, f"NTXentLoss(temperature={tau}) vs lightly's formula, backend={backend}")
    if tau == LIGHTLY_DEFAULT_TAU:
        default = NTXentLoss(backend=backend)(z1.to(DEVICE), z2.to(DEVICE))
        assert_close_rel(default, want, 2e-6, f"NTXentLoss() vs lightly's formula at tau 0.5, backend={backend}")


@pytest.mark.parametrize("tau", [LIGHTLY_DEFAULT_TAU, 0.1])
def test_two_views_match_lightly_itself(tau):
    """Only where lightly is installed (it is no dependency of ours)."""
    lightly_loss = pytest.importorskip("lightly.loss")
    torch.manual_seed(10)
    z1, z2 = torch.randn(9, 17), torch.randn(9, 17)
    theirs = lightly_loss.NTXentLoss(temperature=tau)(z1, z2)
    assert_close_rel(NTXentLoss(temperature=tau)(z1, z2), theirs, 1e-5, f"ours vs lightly's NTXentLoss, tau={tau}")
    if tau == LIGHTLY_DEFAULT_TAU:
        assert_close_rel(NTXentLoss()(z1, z2), lightly_loss.NTXentLoss()(z1, z2), 1e-5, "defaults: ours vs lightly's")


def test_signature_is_lightlys_then_ours_keyword_only():
    params = list(inspect.signature(NTXentLoss).parameters.values())
    shared = [(p.name, p.kind, p.default) for p in params[:3]]
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert shared == [("temperature", positional, 0.5), ("memory_bank_size", positional, 0),
                      ("gather_distributed", positional, False)], shared
    ours = {p.name: (p.kind, p.default) for p in params[3:]}
    assert ours == {"reduction": (inspect.Parameter.KEYWORD_ONLY, "mean"),
                    "backend": (inspect.Parameter.KEYWORD_ONLY, "auto")}, ours
    assert inspect.signature(nt_xent).parameters["temperature"].default == 0.5, "nt_xent's default tau is the module's"

    crit = NTXentLoss(0.2, 0, False)  # positionally, as lightly's takes them
    assert (crit.temperature, crit.gather_distributed, crit.reduction) == (0.2, False, "mean")
    torch.manual_seed(11)
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    assert_close_rel(crit(z1, z2), nt_xent(z1, z2, temperature=0.2), 0, "NTXentLoss(0.2, 0, False) vs nt_xent")
    with pytest.raises(TypeError):
        NTXentLoss(0.2, 0, False, "sum")  # reduction is keyword-only


def test_backward_saves_only_per_row_state():
    """Nothing of size M×M survives the forward: saved tensors are the inputs plus O(M) vectors."""
    V, N, D = 2, 64, 8
    for backend in BACKENDS:
        z = torch.randn(V, N, D, device=DEVICE, requires_grad=True)
        rows = nt_xent(z, temperature=0.1, reduction="none", backend=backend)
        node = rows.grad_fn.next_functions[0][0]  # rows is a (V, N) view of the Function's output
        saved = node.saved_tensors
        biggest = max(t.numel() for t in saved)
        assert biggest <= V * N * D, f"{backend}: a saved tensor has {biggest} elements > V·N·D = {V * N * D}"


def test_chunked_path_is_independent_of_chunk_size(monkeypatch):
    torch.manual_seed(5)
    z = torch.randn(3, 10, 12, requires_grad=True)
    rows = nt_xent(z, temperature=0.2, reduction="none", backend="torch")
    (grad,) = torch.autograd.grad(rows.sum(), z)
    monkeypatch.setattr(nt_xent_chunked, "CHUNK_BYTES", 4 * 90)  # 9x9 blocks of 30 rows: uneven last block
    rows_small = nt_xent(z, temperature=0.2, reduction="none", backend="torch")
    (grad_small,) = torch.autograd.grad(rows_small.sum(), z)
    assert_close_rel(rows_small, rows, 1e-6, "loss, 9-row blocks vs one block")
    assert_close_rel(grad_small, grad, 1e-6, "grad, 9-row blocks vs one block")


def test_zero_embedding_gives_finite_loss_and_gradient():
    z = torch.randn(2, 4, 5, device=DEVICE)
    z[0, 1] = 0.0
    for backend in BACKENDS:
        zz = z.clone().requires_grad_()
        loss = nt_xent(zz, temperature=0.1, backend=backend)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(zz.grad).all(), backend


def test_autocast_cpu_bf16():
    torch.manual_seed(6)
    head = torch.nn.Linear(20, 16)
    x = torch.randn(2, 12, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = head(x)
        assert z.dtype == torch.bfloat16
        loss = nt_xent(z, temperature=0.1)
    loss.backward()
    assert_close_rel(loss, nt_xent_rows_f64(z.detach(), 0.1).mean(), 2e-6, "loss under autocast")
    assert torch.isfinite(head.weight.grad).all()


def test_torch_compile_does_not_fail():
    torch.manual_seed(7)
    head = torch.nn.Linear(10, 8)
    x1, x2 = torch.randn(6, 10), torch.randn(6, 10)

    def step(a, b):
        return nt_xent(head(a), head(b), temperature=0.2)

    compiled = torch.compile(step, backend="aot_eager")
    loss = compiled(x1, x2)
    loss.backward()
    assert_close_rel(loss, step(x1, x2), 1e-6, "compiled vs eager")
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


# ---------------------------------------------------------------------------------------------
# bad input: a clear error that names the problem, never a number
# ---------------------------------------------------------------------------------------------

BAD_INPUTS = [
    (lambda: nt_xent(torch.randn(4, 8), torch.randn(5, 8)), ValueError, "same shape"),
    (lambda: nt_xent(torch.randn(4, 8), torch.randn(4, 8, 1)), ValueError, r"z2 of shape \(N, D\)"),
    (lambda: nt_xent(torch.randn(4, 8)), ValueError, r"\(V, N, D\)"),
    (lambda: nt_xent(torch.randn(8)), ValueError, "1-D"),
    (lambda: nt_xent(torch.randn(8), torch.randn(8)), ValueError, r"z1 of shape \(N, D\)"),
    (lambda: nt_xent(torch.randn(4, 8), torch.randn(4, 8, device="meta")), ValueError, "same device"),
    (lambda: nt_xent(torch.randn(4, 8), torch.randn(4, 8).half()), TypeError, "same dtype"),
    (lambda: nt_xent(torch.randn(1, 8), torch.randn(1, 8)), ValueError, "N=1"),
    (lambda: nt_xent(torch.randn(1, 4, 8)), ValueError, "V=1"),
    (lambda: nt_xent(torch.ones(4, 8, dtype=torch.long), torch.ones(4, 8, dtype=torch.long)), TypeError, "floating"),
    (lambda: nt_xent(torch.randn(2, 4, 0)), ValueError, "dimension"),
    (lambda: nt_xent(torch.randn(2, 4, 8).numpy()), TypeError, "torch.Tensor"),
    (lambda: nt_xent(torch.randn(2, 4, 8), temperature=0.0), ValueError, "temperature"),
    (lambda: nt_xent(torch.randn(2, 4, 8), temperature=-0.1), ValueError, "temperature"),
    (lambda: nt_xent(torch.randn(2, 4, 8), temperature=math.nan), ValueError, "temperature"),
    (lambda: nt_xent(torch.randn(2, 4, 8), temperature="0.1"), TypeError, "temperature"),
    (lambda: nt_xent(torch.randn(2, 4, 8), temperature=True), TypeError, "temperature"),
    (lambda: nt_xent(torch.randn(2, 4, 8), reduction="avg"), ValueError, "reduction"),
    (lambda: nt_xent(torch.randn(2, 4, 8), backend="cuda"), ValueError, "backend"),
    (lambda: nt_xent(torch.randn(2, 4, 8, dtype=torch.float64), backend="triton"), TypeError, "float64"),
    (lambda: NTXentLoss(memory_bank_size=128), ValueError, "no memory bank"),
    (lambda: NTXentLoss(0.5, (4096, 128)), ValueError, "TimeCLR has no memory bank"),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS, ids=[m for _, _, m in BAD_INPUTS])
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(DEVICE == "cuda", reason="checks the CPU-only message")
def test_triton_on_cpu_without_interpreter_says_how(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        nt_xent(torch.randn(2, 4, 8), backend="triton")


def test_row_slab_path_equals_symmetric_path(monkeypatch):
    """The (chunk, M) row-slab path, used when the query rows are one rank's slice of a gathered
    batch, against the symmetric block-pair path on the same rows."""
    monkeypatch.setattr(nt_xent_chunked, "CHUNK_BYTES", 4 * 24 * 5)  # 5-row slabs, 7-wide blocks
    torch.manual_seed(8)
    V, N, W, tau = 2, 3, 4, 0.3
    z = torch.randn(W * V * N, 10)  # W rank blocks of V·N rows
    g = torch.rand(W * V * N)
    inv = nt_xent_chunked.inv_norm(z)
    loss_all, lse_all = nt_xent_chunked.forward(z, inv, 0, W * V * N, N, V * N, tau)
    dz_all = nt_xent_chunked.backward(z, inv, lse_all, g, 0, W * V * N, N, V * N, tau)
    for rank in range(W):
        rows = slice(rank * V * N, (rank + 1) * V * N)
        loss, lse = nt_xent_chunked.forward(z, inv, rows.start, V * N, N, V * N, tau)
        dz = nt_xent_chunked.backward(z, inv, lse_all, g, rows.start, V * N, N, V * N, tau)
        assert_close_rel(loss, loss_all[rows], 1e-6, f"rank {rank} loss rows")
        assert_close_rel(dz, dz_all[rows], 1e-6, f"rank {rank} grad rows")


@pytest.mark.parametrize("width", ["fp32", "16-bit"])
def test_every_autotune_tile_shape_gives_the_reference(width):
    """Each tile shape the autotuner may pick (forward and backward lists, paired by position)
    gives the float64 reference: masks and the online logsumexp hold at every BLOCK_M x BLOCK_N,
    with a batch that fills no tile exactly. On the CPU the interpreter runs each shape (it
    ignores warps and stages); on a GPU the compiled kernels do, all dtypes of the width."""
    from timeclr.kernels import nt_xent_triton as K

    fwd, bwd = K.GPU_TILES["forward", width], K.GPU_TILES["backward", width]
    dtypes = [torch.float32] if width == "fp32" else [torch.bfloat16] + ([torch.float16] if DEVICE == "cuda" else [])
    for i in range(max(len(fwd), len(bwd))):
        with K.fixed_tiles(forward=fwd[i % len(fwd)], backward=bwd[i % len(bwd)]):
            for dtype in dtypes:
                check_against_reference(3, 47, 40, dtype, 0.1, "mean", "triton", seed=i)
