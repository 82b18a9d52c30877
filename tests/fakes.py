"""A fake engine (the runner's stand-in for a pipeline) and helpers, so most tests need no model."""

from __future__ import annotations

import base64
import io
import tempfile
import threading
import time
from contextlib import contextmanager

import numpy as np
from PIL import Image

from openai_dit.config import ServerConfig
from openai_dit.errors import RequestCancelled
from openai_dit.models.capabilities import ModelCapabilities
from openai_dit.models.previews import preview_steps
from openai_dit.runner import Done, Preview, Runner, Started, StepDone
from openai_dit.types import GenerationRequest, GenerationResult, Progress, Task

TEXT_TO_IMAGE = ModelCapabilities(
    pipeline_class="FakeImagePipeline", tasks=frozenset({Task.TEXT_TO_IMAGE, Task.IMAGE_EDIT}), max_input_images=2,
    call_parameters=frozenset({"prompt", "image", "negative_prompt", "guidance_scale", "sigmas", "num_inference_steps",
                               "callback_on_step_end"}), size_multiple=16)
IMAGES = ModelCapabilities(  # an image model as the OpenAI API sees one: edits of up to 2 images, previews
    pipeline_class="FakeImagePipeline", tasks=frozenset({Task.TEXT_TO_IMAGE, Task.IMAGE_EDIT}), max_input_images=2,
    call_parameters=frozenset({"prompt", "image", "negative_prompt", "guidance_scale", "num_inference_steps",
                               "callback_on_step_end"}), size_multiple=16, default_width=256, default_height=128,
    default_steps=8, previews=True)
INPAINT = ModelCapabilities(
    pipeline_class="FakeInpaintPipeline", tasks=frozenset({Task.IMAGE_EDIT}), max_input_images=1,
    call_parameters=frozenset({"prompt", "image", "mask_image"}), size_multiple=16, mask_keyword="mask_image")
TEXT_ONLY = ModelCapabilities(
    pipeline_class="FakeTextOnlyPipeline", tasks=frozenset({Task.TEXT_TO_IMAGE}), max_input_images=0,
    call_parameters=frozenset({"prompt", "guidance_scale"}), size_multiple=16)
VIDEO = ModelCapabilities(
    pipeline_class="FakeVideoPipeline", tasks=frozenset({Task.TEXT_TO_VIDEO, Task.IMAGE_TO_VIDEO}), max_input_images=1,
    call_parameters=frozenset({"prompt", "image", "num_frames", "negative_prompt"}), size_multiple=16,
    frame_multiple=4, default_num_frames=9, default_fps=8, default_width=64, default_height=64, default_steps=4,
    batch_keyword="num_videos_per_prompt")


class FakeEngine:
    """Deterministic outputs from the seed; optional per-step delay and a gate to hold a call mid-way."""

    def __init__(self, capabilities: ModelCapabilities = TEXT_TO_IMAGE, *, step_delay: float = 0.0) -> None:
        self.capabilities = capabilities
        self.step_delay = step_delay
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.calls: list[GenerationRequest] = []  # every request run, in order
        self.batches: list[list[GenerationRequest]] = []  # the requests of each call
        self.cancelled_calls = 0
        self.steps_run = 0
        self.fail_with: BaseException | None = None  # raised by the next call, at its first step
        self.flushes = 0

    def run(self, request, cancelled, on_progress=None) -> GenerationResult:
        return self.run_batch([request], cancelled, on_progress)[0]

    def run_batch(self, requests, cancelled, on_progress=None) -> list[GenerationResult]:
        """One call for the batch: steps once, previews cover every output, a result per request."""
        self.calls.extend(requests)
        self.batches.append(list(requests))
        self.started.set()
        first = requests[0]
        outputs = sum(r.num_outputs for r in requests)
        began = time.time()
        for step in range(first.num_inference_steps):
            while self.gate is not None and not self.gate.wait(0.005) and not cancelled.is_set():
                pass  # held mid-call; a cancelled call stops at this step, as a real one would
            if cancelled.is_set():
                self.cancelled_calls += 1
                raise RequestCancelled()
            if self.fail_with is not None:
                error, self.fail_with = self.fail_with, None
                raise error
            if on_progress:
                progress = Progress(step + 1, first.num_inference_steps)
                due = preview_steps(first.num_inference_steps, first.partial_images)
                if self.capabilities.previews and step + 1 in due:
                    progress.previews = np.full((outputs, first.height, first.width, 3), step, dtype=np.uint8)
                    progress.preview_index = due.index(step + 1)
                on_progress(progress)
            time.sleep(self.step_delay)
            self.steps_run += 1
        return [self._result(request, began) for request in requests]

    @staticmethod
    def _result(request, began: float) -> GenerationResult:
        outputs = [np.random.default_rng(seed).integers(0, 256, size=(request.height, request.width, 3),
                                                         dtype=np.uint8) for seed in request.seeds]
        if request.task.is_video:
            frames = np.stack([np.stack([o] * request.num_frames) for o in outputs])
            return GenerationResult(seeds=request.seeds, started_at=began, finished_at=time.time(), videos=frames)
        return GenerationResult(seeds=request.seeds, started_at=began, finished_at=time.time(),
                                images=np.stack(outputs), prompt_tokens=len(request.prompt.split()))

    def flush(self) -> None:
        self.flushes += 1

    def describe(self) -> dict:
        return {"device": "fake", "dtype": "float32", "cache": None, "compile": False}


def wait_until(condition, timeout: float = 10.0, interval: float = 0.005) -> None:
    """Until `condition()` holds (an AssertionError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


@contextmanager
def serving(engine: FakeEngine, **config_overrides):
    """A TestClient on the real app, with the fake engine behind a real Runner (and a fresh data directory unless
    `data_dir` is given: pass the same one twice to restart a server)."""
    from litestar.testing import TestClient

    from openai_dit.server import create_app

    with tempfile.TemporaryDirectory(prefix="openai-dit-data-") as data_dir:
        config = ServerConfig(model_path="fake-model", **{"data_dir": data_dir, **config_overrides})
        runner = Runner(lambda: engine, max_queued=config.max_queued_requests,
                        max_batch_size=config.max_batch_size)
        with TestClient(create_app(config, runner)) as client:
            wait_until(lambda: runner.ready, timeout=5)
            client.runner = runner
            yield client


def png_bytes(width: int = 32, height: int = 32, color=(200, 30, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def decode_png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def assert_openai_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    for leak in ("Traceback", "/work/", "/tmp/", "0x7f", "File \""):
        assert leak not in error["message"]
    return error


async def run_request(runner: Runner, request: GenerationRequest, on_progress=None) -> GenerationResult:
    """Submit `request` and follow its events to the result. `on_progress` gets a Progress per event: step 0 when
    its call starts, then each step, with that step's previews when it has some."""
    last: Progress | None = None
    async for event in runner.submit(request):
        if isinstance(event, Started | StepDone) and on_progress is not None:
            last = Progress(0 if isinstance(event, Started) else event.step, event.total_steps)
            on_progress(last)
        elif isinstance(event, Preview) and last is not None:
            last.previews, last.preview_index = event.images, event.index
        elif isinstance(event, Done):
            return event.result
    raise AssertionError("the submission ended without a result")
