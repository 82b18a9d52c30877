"""Where a model runs: the device of each rank, the weights' dtype, and the accelerator's memory figures.

`--device` forms: `cpu`; `cuda` (with several ranks: rank r on `cuda:r`); `cuda:N` (rank r on `cuda:N+r`, so one
launch can start at any GPU); `cuda:A,B,...` (rank r on the r-th listed GPU). Checked at launch, before anything
loads, against the GPUs this machine has.
"""

from __future__ import annotations

import re

import torch

__all__ = ["check_device", "cuda_memory", "default_job_pixels", "rank_device", "resolve_dtype", "synchronize"]

# The default work budget (pixels x frames x outputs per job): 2.5 M per GiB of GPU memory (an 80 GiB H100: 200 M,
# e.g. 1280x720 x 217 frames; 24 GiB: 60 M), and 64 M on the CPU.
_JOB_PIXELS_PER_GIB = 2_500_000
_CPU_JOB_PIXELS = 64_000_000

_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu)(?::(\d+(?:,\d+)*))?$")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def _indices(requested: str) -> tuple[str, list[int] | None]:
    match = _DEVICE.match(requested.strip())
    if not match:
        raise ValueError(f"--device {requested!r}: expected cpu, cuda, cuda:N or cuda:A,B,...")
    kind, indices = match.group(1), match.group(2)
    return kind, [int(i) for i in indices.split(",")] if indices else None


def rank_device(requested: str | None, *, local_rank: int = 0, world_size: int = 1) -> str:
    """The device this rank uses (see the module's note). `None`: cuda when available, else cpu."""
    if not requested:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    kind, indices = _indices(requested)
    if kind == "cpu":
        return "cpu"
    if indices is None:
        return f"{kind}:{local_rank}" if world_size > 1 else kind
    if len(indices) == 1:
        return f"{kind}:{indices[0] + (local_rank if world_size > 1 else 0)}"
    return f"{kind}:{indices[local_rank]}"


def check_device(requested: str | None, world_size: int) -> str | None:
    """A launch problem with --device (None when sound): a malformed name, CUDA missing, a GPU that does not
    exist, or a list whose length is not the number of ranks."""
    if not requested:
        return None
    try:
        kind, indices = _indices(requested)
    except ValueError as exc:
        return str(exc)
    if kind == "cpu":
        return None
    if kind != "cuda":
        return None  # other accelerators: their own runtime reports what is wrong
    if not torch.cuda.is_available():
        return f"--device {requested} was asked for, but CUDA is not available on this machine"
    if indices is not None and len(indices) > 1 and len(indices) != world_size:
        return f"--device {requested} lists {len(indices)} GPUs for {world_size} rank(s): list one per rank"
    count = torch.cuda.device_count()
    used = [rank_device(requested, local_rank=r, world_size=world_size) for r in range(world_size)]
    missing = [device for device in used if ":" in device and int(device.split(":")[1]) >= count]
    if missing:
        return f"--device {requested} puts rank(s) on {', '.join(missing)}, but this machine has {count} GPU(s)"
    return None


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """`auto`: bfloat16 on GPUs that support it, float16 on older GPUs, float32 on the CPU."""
    if name != "auto":
        return _DTYPES[name]
    if not device.startswith("cuda"):
        return torch.float32
    with torch.cuda.device(torch.device(device)):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def synchronize(device: str) -> None:
    """Wait for the queued kernels of `device` (so that a step reported done is done); no-op off CUDA."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def cuda_memory(device: str) -> dict[str, float] | None:
    """Bytes allocated, reserved and peak-allocated on a CUDA device (None elsewhere)."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    index = torch.device(device)
    return {"allocated": float(torch.cuda.memory_allocated(index)),
            "reserved": float(torch.cuda.memory_reserved(index)),
            "max_allocated": float(torch.cuda.max_memory_allocated(index))}


def default_job_pixels(device: str) -> int:
    """The largest job (width x height x frames x outputs) served by default on `device`."""
    if device.startswith("cuda") and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        return int(total / 2**30 * _JOB_PIXELS_PER_GIB)
    return _CPU_JOB_PIXELS
