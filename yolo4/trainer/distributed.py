"""Multi-GPU / multi-node training with ``torch.distributed`` (DDP), launched by ``torchrun``.

``yolo4 train --devices 0,1`` (GPUs 0 and 1) or ``--devices cpu:2`` (2 CPU processes, gloo backend;
for tests and machines without GPUs) re-launches the same command under
``python -m torch.distributed.run --standalone --nproc_per_node N`` (:func:`launch`) and exits with
its status. Multi-node: run ``torchrun --nnodes ... --nproc_per_node ... -m yolo4.cli train ...`` on
every node yourself; :func:`train` sees ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and joins the group.

Conventions (those of ultralytics):

* ``--batch`` is the **global** batch: each optimizer step trains on ``batch`` images split across the
  ``N`` processes (``batch / N`` each), so the learning rate, schedule, steps per epoch, EMA and
  checkpoints are those of a single-process run at the same ``--batch``.
* Each epoch's seeded order (:func:`.dataset.epoch_order`) is cut into the global batches of the
  single-process run, and every global batch is split into ``N`` contiguous, disjoint shards
  (:func:`shard_batches`, a ``DistributedSampler`` over the same permutation without its padding).
  Each process weights its loss by ``shard_size * N / batch_images``, so DDP's gradient average is the
  gradient of the global batch's per-image mean loss also when the last batch does not divide evenly.
  A process whose shard of a short last batch is empty trains on one repeated image with weight 0.
* Batch norm normalises per process (``batch / N`` images) unless ``--sync-bn`` (CUDA only) converts
  it to ``SyncBatchNorm``; DDP broadcasts rank 0's running statistics before every forward.
* Rank 0 alone validates, logs, writes ``results.csv`` / ``last.pt`` / ``best.pt`` and the darknet files;
  the others wait on a barrier after each epoch. The EMA is updated on every rank (the same weights),
  checkpoints come from rank 0.
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

#: how long ranks wait at a barrier while rank 0 validates and saves
TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class World:
    """This process's place in the group: ``rank`` (global), ``local_rank`` (on this machine), ``size``
    (processes in all; 1 = not distributed) and ``backend`` (``nccl`` / ``gloo``, None when size 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    backend: Optional[str] = None

    @property
    def main(self) -> bool:
        """Whether this process logs and writes files (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether more than one process trains."""
        return self.size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it (1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def setup(device: str) -> Tuple[World, torch.device]:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); idempotent.

    Args:
        device: the requested torch device; ``cuda*`` selects ``nccl`` and ``cuda:LOCAL_RANK``, anything
            else ``gloo`` on the CPU.

    Returns:
        ``(world, device)``: without ``torchrun`` ``World()`` and ``torch.device(device)`` unchanged.
    """
    size = env_world_size()
    if size <= 1:
        return World(), torch.device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.device(device).type == "cuda"
    dev = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return World(rank, local_rank, dist.get_world_size(), str(dist.get_backend())), dev


def cleanup() -> None:
    """Leave the process group (when in one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every process (no-op when not distributed)."""
    if world.active:
        dist.barrier()


def all_true(world: World, flag: bool) -> bool:
    """Whether ``flag`` holds on every process (one collective; ``flag`` itself when not distributed)."""
    if not world.active:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device(world))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def all_sum(world: World, values: Sequence[float]) -> List[float]:
    """Elementwise sum of ``values`` over all processes (float64; ``values`` when not distributed)."""
    if not world.active:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device(world))
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(world: World, obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (picklable objects; ``obj`` when not distributed)."""
    if not world.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _comm_device(world: World) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if world.backend == "nccl" else torch.device("cpu")


def shard_batches(order: Sequence[int], batch_size: int, rank: int, world_size: int
                  ) -> Tuple[List[List[int]], List[float]]:
    """This rank's share of every global batch of an epoch (a ``DistributedSampler`` over ``order``).

    ``order`` is cut into the single-process run's batches of ``batch_size`` (the last one shorter);
    each batch of ``L`` images is split into ``world_size`` contiguous shards as evenly as it goes (the
    first ``L % world_size`` shards one image longer). The shards of all ranks are disjoint and cover
    ``order`` exactly; the split depends on nothing but its arguments (every rank computes the same).

    Returns:
        ``(batches, weights)``, one entry per optimizer step: the dataset indices this rank loads, and
        the factor of its per-image mean loss, ``len(shard) * world_size / L``, so that DDP's average
        of the ranks' gradients is the gradient of the global batch's per-image mean. A rank with an
        empty shard (``L < world_size``) gets the batch's first image with weight 0 (DDP needs a
        forward and backward on every rank).
    """
    batches, weights = [], []
    n = len(order)
    for start in range(0, n, int(batch_size)):
        chunk = list(order[start:start + int(batch_size)])
        size = len(chunk)
        q, r = divmod(size, world_size)
        a = rank * q + min(rank, r)
        b = a + q + (1 if rank < r else 0)
        if b > a:
            batches.append(chunk[a:b])
            weights.append((b - a) * world_size / size)
        else:
            batches.append(chunk[:1])
            weights.append(0.0)
    return batches, weights


def parse_devices(text: str) -> Tuple[int, str, Optional[str]]:
    """``--devices``: ``0,1`` (CUDA GPUs) or ``cpu:N`` (N CPU processes).

    Returns:
        ``(processes, device, cuda_visible_devices)``: ``(2, "cuda", "0,1")`` or ``(2, "cpu", None)``.

    Raises:
        ValueError: anything else (empty, repeated ids, ``cpu:0``).
    """
    t = text.strip().lower()
    if t.startswith("cpu"):
        rest = t[3:].lstrip(":") or "1"
        if not rest.isdigit() or int(rest) < 1:
            raise ValueError(f"--devices {text!r}: cpu:N needs a process count N >= 1 (cpu:2)")
        return int(rest), "cpu", None
    ids = [s.strip() for s in t.split(",") if s.strip()]
    if not ids or not all(s.isdigit() for s in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"--devices {text!r}: give GPU ids (0,1) or cpu:N (N CPU processes)")
    return len(ids), "cuda", ",".join(ids)


def launch_command(nproc: int, cli_args: Sequence[str]) -> List[str]:
    """The ``torchrun`` command that runs ``yolo4 <cli_args>`` in ``nproc`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
            "-m", "yolo4.cli", *[str(a) for a in cli_args]]


def launch(nproc: int, cli_args: Sequence[str], cuda_visible: Optional[str] = None) -> int:
    """Run :func:`launch_command` (with ``CUDA_VISIBLE_DEVICES`` set for GPU ids); its exit status."""
    env = dict(os.environ)
    if cuda_visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, int(nproc)))))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.call(launch_command(nproc, cli_args), env=env)
