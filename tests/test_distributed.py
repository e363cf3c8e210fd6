"""gather_distributed=True: W ranks under DDP make the same update as one process on the W·N items.

Two CPU processes with the gloo backend, each with *different* data: symmetric data would hide
the classic bugs (a gather whose backward drops the other ranks' gradient, or double counts it).
"""
import datetime
import gc
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from tests.helpers.reference import nt_xent_rows_f64
from tests.helpers.spawn import free_port, spawn_with_deadline
from timeclr import nt_xent

pytestmark = pytest.mark.heavy  # several processes (or a long compile): scheduled first

WORLD, V, N, D_IN, D = 2, 3, 5, 12, 8
TAU, LR = 0.2, 0.5


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(V, WORLD * N, D_IN, generator=g)  # the global batch; rank k holds items k·N..(k+1)·N
    model = torch.nn.Linear(D_IN, D)
    with torch.no_grad():
        model.weight.copy_(torch.randn(D, D_IN, generator=g))
        model.bias.copy_(torch.randn(D, generator=g))
    return x, model


def _one_process_step(reduction, backend):
    """Reference: one process, the whole global batch, a plain SGD step."""
    x, model = _data()
    loss = nt_xent(model(x), temperature=TAU, reduction=reduction, backend=backend)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    return loss.item(), [p.detach().clone() for p in model.parameters()]


def _step(rank, reduction, backend):
    """One DDP step on this rank's items; returns what the parent checks."""
    x, model = _data()
    ddp = DDP(model)
    x_local = x[:, rank * N:(rank + 1) * N]  # (V, N, D_IN): this rank's items, all views
    z = ddp(x_local)
    loss = nt_xent(z, temperature=TAU, reduction=reduction, backend=backend, gather_distributed=True)
    rows = nt_xent(z.detach(), temperature=TAU, reduction="none", backend=backend, gather_distributed=True)
    loss.backward()  # DDP averages the gradients over ranks here
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    return {"loss": loss.item(), "rows": rows, "params": [p.detach().clone() for p in model.parameters()]}


TRITON_OK = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")  # gloo runs on CPU tensors: Triton interprets
CASES = [(reduction, backend) for backend in ("torch", "triton") for reduction in ("mean", "sum")
         if backend == "torch" or TRITON_OK]


def _worker(rank, port, cases, out_dir):
    """Every case's DDP step in one process group: the two ranks start once for all of them
    (each start imports torch, seconds of CPU), and each case starts from the same _data()."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if any(backend == "triton" for _, backend in cases):
        os.environ["TRITON_INTERPRET"] = "1"
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=120))
    try:
        for reduction, backend in cases:
            # The DDP wrapper lives and dies inside _step: its Reducer must not hold the last
            # reference to the process group, or freeing it joins gloo's threads while holding the
            # GIL that a finishing gloo thread waits for (a torch deadlock seen here at exit).
            result = _step(rank, reduction, backend)
            gc.collect()
            torch.save(result, os.path.join(out_dir, f"{reduction}-{backend}-rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results():
    """{(reduction, backend): [rank 0's result, rank 1's]} of one two-rank job over every case."""
    with tempfile.TemporaryDirectory() as out_dir:
        spawn_with_deadline(_worker, (free_port(), CASES, out_dir), WORLD)
        return {(r, b): [torch.load(os.path.join(out_dir, f"{r}-{b}-rank{k}.pt")) for k in range(WORLD)]
                for r, b in CASES}


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    not TRITON_OK, reason="gloo runs on CPU tensors: needs Triton's interpreter"))])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ddp_step_equals_one_process_on_global_batch(reduction, backend, ddp_results):
    want_loss, want_params = _one_process_step(reduction, backend)
    x, model = _data()
    want_rows = nt_xent_rows_f64(model(x).detach(), TAU)  # (V, W·N)
    results = ddp_results[(reduction, backend)]

    for rank, res in enumerate(results):
        where = f"rank {rank}, reduction={reduction}, backend={backend}"
        assert abs(res["loss"] - want_loss) <= 1e-5 * abs(want_loss), (
            f"{where}: logged loss {res['loss']:.8g} is not the global-batch loss {want_loss:.8g}")
        got_rows = res["rows"].double()
        exp_rows = want_rows[:, rank * N:(rank + 1) * N]
        assert torch.allclose(got_rows, exp_rows, atol=1e-5), (
            f"{where}: per-row losses differ from the global batch's rows by {(got_rows - exp_rows).abs().max():.3e}")
        for name, got, exp in zip(["weight", "bias"], res["params"], want_params):
            err = (got - exp).abs().max().item()
            assert err <= 1e-5, f"{where}: {name} after one step differs from the one-process step by {err:.3e}"
