"""The runner: admission queue and the generation thread that owns the pipeline; the event loop follows each
request through its events (`async for event in runner.submit(request)`)."""

from .events import Done, EncodeProgress, Event, Preview, Queued, Started, StepDone
from .jobs import EncodeStage, Submission
from .runner import Engine, Runner, RunnerState

__all__ = ["Done", "EncodeProgress", "EncodeStage", "Engine", "Event", "Preview", "Queued", "Runner", "RunnerState",
           "Started", "StepDone", "Submission"]
