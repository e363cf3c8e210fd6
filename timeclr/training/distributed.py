"""Processes and devices: what a run needs to know about the job it is part of.

    setup_distributed   torchrun's environment -> (world, rank, device), collectives bounded by
                        ``dist.timeout_s``; teardown_distributed, barrier
    collective_failure  a failed collective as one line naming the dead or stuck rank(s)
    gather_in_order     per-video results of every rank, on every rank, in manifest order
    to_device, autocast the host-to-device copy that never blocks; bf16 autocast on CUDA
"""
import datetime
import gc
import os
import re
import sys

import torch
import torch.distributed as dist

from timeclr.errors import ConfigError
from timeclr.training.threads import choose_cpu_threads

def setup_distributed(cfg):
    """(world size, rank, device): joins the process group under torchrun (which sets WORLD_SIZE /
    RANK / LOCAL_RANK) and makes every rank's batches full and equal, or the collectives hang."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and restarts_share_the_agent_store() and os.environ.get("RANK") == "0":
        print("warning: torchrun --max-restarts with the agent's shared TCPStore can hand a restarted job "
              "the old attempt's addresses (pytorch/pytorch#135712); run torchrun with "
              "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1", file=sys.stderr)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                timeout=datetime.timedelta(seconds=cfg.dist.timeout_s))
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        choose_cpu_threads(verbose=rank == 0)  # a shared machine's busy cores are not free
    if cfg.data.device == "gpu" and device.type != "cuda":
        raise ConfigError("data.device=gpu but torch sees no CUDA device; use data.device=cpu")
    if world > 1:
        cfg.data.drop_last = True
    return world, rank, device


def restarts_share_the_agent_store() -> bool:
    """True under a torchrun that may restart its workers and shares its rendezvous TCPStore with
    them (torch's default since 2.5): the store outlives an attempt, so the process group of a
    restart can read the previous attempt's rank addresses and fail to connect."""
    return (os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
            and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0)


# what gloo and NCCL say when a peer is gone or a collective ran past dist.timeout_s
_COLLECTIVE_FAILED = re.compile(r"gloo|nccl|Connection (reset|closed)|Timed out waiting|timed out", re.I)


GRACE_S = 10.0  # how long a rank that saw a collective fail waits for the others to check in


def collective_failure(e: BaseException, cfg) -> str | None:
    """One line naming the rank(s) a failed collective waited for, or None when ``e`` is not a
    collective's failure (or there is no process group).

    gloo's own message names a socket, not a rank. So every rank that sees a collective fail
    checks in at the job's store and waits up to ``GRACE_S`` for the others: the ranks that do not
    are the dead or stuck ones. Without the store (it lived in a rank that died) the line says so.
    """
    if not (dist.is_initialized() and isinstance(e, RuntimeError) and _COLLECTIVE_FAILED.search(str(e))):
        return None
    rank, world = dist.get_rank(), dist.get_world_size()
    keys = [f"timeclr/collective-failed/{r}" for r in range(world)]
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set(keys[rank], "1")
        try:
            store.wait(keys, datetime.timedelta(seconds=GRACE_S))
        except RuntimeError:  # DistStoreError on its timeout: some rank never checked in
            pass
        absent = [r for r in range(world) if not store.check([keys[r]])]
        who = (f"rank {', '.join(map(str, absent))} of {world} died or stopped answering" if absent
               else "every rank saw it fail")
    except Exception:  # the store is gone with the rank that held it (rank 0 or the node of MASTER_ADDR)
        who = "the job's store is gone too, so rank 0 (or its node) died"
    detail = str(e).strip().split("\n")[0]
    return (f"rank {rank}: a collective failed ({detail[:160]}); {who} "
            f"(collectives wait at most dist.timeout_s={cfg.dist.timeout_s:g} s)")


def teardown_distributed():
    """Leave the process group, if any. The DDP wrapper (kept alive by a traceback, say) is freed
    first while the group is still referenced: a Reducer dropping the last reference deadlocks in
    torch's gloo teardown."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def barrier():
    """Wait for every rank (no-op in one process)."""
    if dist.is_initialized():
        dist.barrier()


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` on ``device`` without making the host wait: a CPU tensor bound for a GPU is copied
    into page-locked memory first, since ``non_blocking=True`` from pageable memory (what DALI's
    CPU outputs are) is a blocking copy. Tensors already there are returned as they are."""
    if torch.device(device).type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def gather_in_order(rows: dict, order: torch.Tensor) -> dict:
    """Per-video results of every rank, on every rank, in manifest order.

    ``rows`` maps a name to a (tensor, dim) pair whose ``dim`` runs over this rank's videos, and
    ``order`` gives those videos' manifest indices. Under DDP each rank evaluates its own shard
    (so no rank idles at a barrier past NCCL's timeout while another does all the work); the
    shards are gathered with ``all_gather_object`` (CPU tensors, any size) and sorted back.
    """
    names = list(rows)
    part = [order] + [rows[n][0] for n in names]
    if dist.is_initialized():
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, part)
        part = [torch.cat([p[0] for p in parts])] + [
            torch.cat([p[i + 1] for p in parts], rows[n][1]) for i, n in enumerate(names)]
    sort = part[0].argsort()
    return {n: t.index_select(rows[n][1], sort) for n, t in zip(names, part[1:])}


def amp_dtype(device, bf16: bool = True) -> torch.dtype:
    """The dtype a training step computes in: bf16 on CUDA when ``bf16``, else fp32 (CPU)."""
    return torch.bfloat16 if device.type == "cuda" and bf16 else torch.float32


def autocast(device, bf16: bool = True):
    """bf16 autocast on CUDA when ``bf16``; a disabled context elsewhere (CPU runs fp32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp_dtype(device, bf16) == torch.bfloat16)
