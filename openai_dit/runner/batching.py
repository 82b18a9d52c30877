"""Grouping queued jobs into one pipeline call, and fanning the call's progress back out to its members."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..types import GenerationRequest, Progress

__all__ = ["BatchMember", "CallStop", "compatible_jobs", "fan_out_progress", "take_batch", "waiting_images"]


class BatchMember(Protocol):
    request: GenerationRequest
    cancelled: threading.Event
    regrouped: bool

    def on_progress(self, progress: Progress) -> None: ...


def compatible_jobs(pending: deque, key: tuple, room: int) -> list[Any]:
    """The waiting, live jobs with batch key `key` that fit, oldest first, into a call with `room` outputs left."""
    chosen, added = [], 0
    for job in pending:
        n = job.request.num_outputs
        if job.request.batch_key == key and not job.cancelled.is_set() and added + n <= room:
            chosen.append(job)
            added += n
    return chosen


def take_batch(pending: deque, max_images: int) -> list[Any]:
    """Pop the oldest job and every waiting job that can share its call (the same batch key), oldest first, while
    the call makes at most `max_images` outputs. No waiting for more: a lone job runs at once."""
    head = pending.popleft()
    key = head.request.batch_key
    if key is None or max_images <= 1:
        return [head]
    joining = compatible_jobs(pending, key, max_images - head.request.num_outputs)
    for job in joining:
        pending.remove(job)
    return [head, *joining]


class CallStop:
    """What stops a running call: every member cancelled (one that leaves alone does not stop the others), or a
    regroup: compatible requests arrived during its first step, and the call restarts with them."""

    def __init__(self, members: Sequence[BatchMember]) -> None:
        self._members = members
        self.regroup = threading.Event()

    @property
    def all_cancelled(self) -> bool:
        return all(member.cancelled.is_set() for member in self._members)

    def is_set(self) -> bool:
        return self.regroup.is_set() or self.all_cancelled


def waiting_images(pending: deque, key: tuple, room: int) -> int:
    """Outputs that waiting jobs with this batch key would add to a call with `room` outputs left (as
    `take_batch` would pick them)."""
    return sum(job.request.num_outputs for job in compatible_jobs(pending, key, room))


def fan_out_progress(members: Sequence[BatchMember]) -> Callable[[Progress], None]:
    """One listener for the call that passes each member its own progress (and its own slice of the previews)."""
    offsets, start = [], 0
    for member in members:
        offsets.append(start)
        start += member.request.num_outputs

    def listener(progress: Progress) -> None:
        for member, offset in zip(members, offsets, strict=True):
            if member.cancelled.is_set():
                continue
            previews = None
            if progress.previews is not None:
                previews = progress.previews[offset:offset + member.request.num_outputs]
            member.on_progress(Progress(progress.step, progress.total_steps, previews, progress.preview_index))

    return listener
