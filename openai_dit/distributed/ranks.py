"""The process group of a torchrun launch, and the one collective the ranks use to stay in step.

Every rank calls `StepSync` at the same points of a pipeline call: after each denoising step, at the end of the
call, and (instead of the next of those) when it failed. One all-reduce of (stop, failed) flags tells every rank
whether rank 0 cancelled the call and whether any rank failed, so all ranks leave a call at the same step
boundary. A collective that fails (a peer died) raises RanksLost; one that never returns is the watchdog's.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["PeerFailed", "RankInfo", "RanksLost", "StepSync", "init_ranks", "launched_ranks"]


class RanksLost(RuntimeError):
    """A collective between the ranks failed: a rank died or the group broke. The launch cannot go on."""


class PeerFailed(RuntimeError):
    """Another rank failed this call; every rank left it at the same point, so the ranks are still consistent."""


def launched_ranks() -> int:
    """The world size torchrun set up for this process (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class RankInfo:
    rank: int
    world_size: int
    local_rank: int
    sync_group: object  # a gloo group for StepSync and set-up messages (CPU tensors, whatever the device)


def init_ranks(device: str, local_rank: int, step_timeout: float) -> RankInfo:
    """Join the torchrun process group (NCCL on CUDA, bound to this rank's `device`; gloo on CPU) and create the
    gloo group for StepSync."""
    backend = "nccl" if device.startswith("cuda") else "gloo"
    timeout = datetime.timedelta(seconds=step_timeout)
    if backend == "nccl":
        torch.cuda.set_device(torch.device(device))
        # device_id binds the communicator to this GPU at once (no guessing from the current device later).
        dist.init_process_group(backend=backend, timeout=timeout, device_id=torch.device(device))
    else:
        dist.init_process_group(backend=backend, timeout=timeout)
    sync_group = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else dist.group.WORLD
    return RankInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                    sync_group=sync_group)


class StepSync:
    """(stop, failed) -> the same (any rank's stop from rank 0, any rank failed) on every rank."""

    def __init__(self, group) -> None:
        self._group = group
        self._lock = threading.Lock()
        self.in_call_since: float | None = None  # set while a call runs; the watchdog reads it
        self.last_sync: float = time.monotonic()

    def __call__(self, stop: bool, failed: bool) -> tuple[bool, bool]:
        flags = torch.tensor([int(stop), int(failed)], dtype=torch.int32)
        try:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self._group)
        except Exception as exc:  # noqa: BLE001 - any failure of the collective means the group is gone
            raise RanksLost(f"the ranks lost contact: {type(exc).__name__}") from exc
        self.last_sync = time.monotonic()
        return bool(flags[0]), bool(flags[1])

    def begin(self) -> None:
        self.last_sync = self.in_call_since = time.monotonic()

    def end(self) -> None:
        self.in_call_since = None
