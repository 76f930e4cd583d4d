"""One code path for one and many processes: launch-environment parsing, process group, collectives.

``init_distributed()`` reads torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and, when
they are absent, maps SLURM's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, first host of SLURM_NODELIST).
A single process (WORLD_SIZE absent or 1) creates no process group, and every helper below degrades to the
identity, so losses and the trainer never branch on "distributed or not".

``all_gather_with_grad`` is the collective the contrastive losses rely on (docs/methods.md section 2.6;
TripletCLIP arXiv 2411.02545, CE-CLIP arXiv 2306.08832): it concatenates every rank's tensor along dim 0 and its
backward sums the column gradients of all ranks back onto each rank's own rows. NOTE: the plain
``torch.distributed.all_gather`` is never used for features: it returns leaves without history and silently
drops the cross-rank gradient (the bug CE-CLIP's non-``gather_with_grad`` path papers over).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

import torch
import torch.distributed as dist

DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class LaunchInfo:
    """What the launcher says about this process (pure data, see :func:`read_launch_env`)."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: str  # "torchrun", "slurm" or "single"


@dataclass
class DistEnv:
    """This process's place in the job; ``world_size == 1`` means no process group exists."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = "gloo"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(
            f"distributed: environment variable {key}={env[key]!r} is not an integer; fix the launcher"
        ) from None


def first_slurm_host(nodelist: str) -> str:
    """First host of a SLURM node list: ``gpu[003-005,010],cpu7`` -> ``gpu003``; ``r[1-2]-n[07-09]`` -> ``r1-n07``."""
    nodelist = nodelist.strip()
    if not nodelist:
        raise ValueError("distributed: SLURM_NODELIST is empty; set MASTER_ADDR explicitly")
    # the first top-level entry ends at the first comma outside brackets
    depth, end = 0, len(nodelist)
    for pos, ch in enumerate(nodelist):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = pos
            break
    entry = nodelist[:end]
    # every bracket group contributes its first element, keeping zero padding: "003-005" -> "003"
    host = re.sub(r"\[([^\[\]]+)\]", lambda m: m.group(1).split(",")[0].split("-")[0], entry)
    if not host or "[" in host or "]" in host:
        raise ValueError(f"distributed: cannot parse SLURM_NODELIST={nodelist!r}; set MASTER_ADDR explicitly")
    return host


def read_launch_env(env: Mapping[str, str]) -> LaunchInfo:
    """Resolve rank / world size / rendezvous from a launcher environment (pure; ``os.environ`` by default).

    torchrun's variables win; SLURM's are used only when WORLD_SIZE is absent. The SLURM rendezvous port
    defaults to a value derived from SLURM_JOB_ID so that two jobs sharing a node do not collide.
    """
    if "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE")
        rank = _int(env, "RANK") if "RANK" in env else 0
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        addr = env.get("MASTER_ADDR", "127.0.0.1")
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else DEFAULT_MASTER_PORT
        source = "torchrun" if world > 1 else "single"
    elif "SLURM_NTASKS" in env and _int(env, "SLURM_NTASKS") > 1:
        world = _int(env, "SLURM_NTASKS")
        rank = _int(env, "SLURM_PROCID") if "SLURM_PROCID" in env else 0
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        if "MASTER_ADDR" in env:
            addr = env["MASTER_ADDR"]
        else:
            nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "")
            addr = first_slurm_host(nodelist)
        if "MASTER_PORT" in env:
            port = _int(env, "MASTER_PORT")
        elif "SLURM_JOB_ID" in env:
            port = 15000 + _int(env, "SLURM_JOB_ID") % 20000
        else:
            port = DEFAULT_MASTER_PORT
        source = "slurm"
    else:
        world, rank, local, addr, port, source = 1, 0, 0, "127.0.0.1", DEFAULT_MASTER_PORT, "single"
    if world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"distributed: rank {rank} is outside world size {world} ({source} variables); fix the launcher"
        )
    return LaunchInfo(rank=rank, world_size=world, local_rank=local, master_addr=addr, master_port=port, source=source)


def cuda_index(local_rank: int, visible: int) -> int:
    """The GPU of this process: ``local_rank`` when the node's GPUs are all visible (torchrun, ``srun`` with
    ``--gpus-per-node``), 0 when the launcher shows each task only its own (``srun --gpus-per-task=1``, where
    CUDA_VISIBLE_DEVICES holds one id and ``set_device(local_rank)`` would fail)."""
    if visible == 1:
        return 0
    if not 0 <= local_rank < visible:
        raise ValueError(f"distributed: local rank {local_rank} but {visible} visible GPUs; give each task one GPU "
                         "(--gpus-per-task=1) or all of the node's (one task per GPU)")
    return local_rank


def init_distributed(
    env: Mapping[str, str] | None = None, device: str | None = None, timeout_s: float = 1800.0
) -> DistEnv:
    """Join the job described by ``env`` (default ``os.environ``): gloo on CPU, nccl on CUDA.

    ``device`` forces "cpu" or "cuda" (default: CUDA when available). One process creates no group.
    ``timeout_s``: how long a collective waits for the other ranks before failing (``train.dist_timeout_s``).
    """
    info = read_launch_env(os.environ if env is None else env)
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        index = cuda_index(info.local_rank, torch.cuda.device_count())
        torch.cuda.set_device(index)
        dev, backend = torch.device("cuda", index), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if info.world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            init_method=f"tcp://{info.master_addr}:{info.master_port}",
            rank=info.rank,
            world_size=info.world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    return DistEnv(rank=info.rank, world_size=info.world_size, local_rank=info.local_rank, device=dev, backend=backend)


def is_dist() -> bool:
    """True when a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and logs."""
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def _gather_autograd(t: torch.Tensor) -> torch.Tensor:
    try:  # functional collectives: autograd-aware, backward is a reduce-scatter (sum)
        from torch.distributed._functional_collectives import all_gather_single_autograd

        out = all_gather_single_autograd(t.contiguous(), 0, dist.group.WORLD)
        return out.wait() if hasattr(out, "wait") else out
    except ImportError:  # older torch: the (deprecated, still correct) autograd all_gather
        import torch.distributed.nn.functional as dist_fn

        return torch.cat(dist_fn.all_gather(t.contiguous()), dim=0)


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` of every rank along dim 0 (rank order); gradients flow back to every contribution.

    Identity in a single process. Tensors without gradient (masks, types) go through the same collective;
    bool tensors travel as uint8 because not every backend reduces bools.
    """
    if not is_dist():
        return t
    if t.dtype == torch.bool:
        return _gather_autograd(t.to(torch.uint8)).bool()
    return _gather_autograd(t)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a (detached) tensor, for logging; a detached copy in a single process."""
    out = tensor.detach().clone()
    if not out.is_floating_point():
        out = out.double()
    if is_dist():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (e.g. a run folder name chosen by rank 0)."""
    if not is_dist():
        return obj
    holder = [obj if get_rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def cleanup() -> None:
    """Destroy the process group if one was created (safe to call always)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    "DistEnv",
    "LaunchInfo",
    "read_launch_env",
    "first_slurm_host",
    "init_distributed",
    "cuda_index",
    "is_dist",
    "get_rank",
    "get_world_size",
    "is_main",
    "barrier",
    "all_gather_with_grad",
    "all_reduce_mean",
    "broadcast_object",
    "cleanup",
]
