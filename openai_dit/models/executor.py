"""The synchronous side: one pipeline call for a request, with progress, cancellation and uint8 outputs."""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..distributed.ranks import PeerFailed, RanksLost, StepSync
from ..errors import RequestCancelled
from ..parameters import call_arguments
from ..types import GenerationRequest, GenerationResult, Progress
from .cache import separate_guidance
from .devices import cuda_memory, synchronize
from .loader import LoadedModel
from .previews import DenoisedEstimate, decode_preview, preview_steps

__all__ = ["PipelineExecutor", "to_uint8"]

logger = logging.getLogger("openai_dit.executor")

ProgressCallback = Callable[[Progress], None]


def to_uint8(output: Any) -> np.ndarray:
    """Normalise a pipeline's `.images` / `.frames` (np, torch or PIL; floats in [0, 1]) to a uint8 array."""
    if isinstance(output, list) and output and hasattr(output[0], "size") and hasattr(output[0], "mode"):
        return np.stack([np.asarray(img.convert("RGB")) for img in output])
    if isinstance(output, torch.Tensor):
        output = output.detach().float().cpu().numpy()
    array = np.asarray(output)
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)


class PipelineExecutor:
    """Runs pipeline calls. One call at a time: only the runner's generation thread calls `run`."""

    def __init__(self, model: LoadedModel, step_sync: StepSync | None = None) -> None:
        self.model = model
        self.step_sync = step_sync  # several ranks: keeps every rank's call in step
        # Partial images are decoded on rank 0 alone, which a parallel VAE cannot do: none with several ranks.
        self.capabilities = model.capabilities if step_sync is None else \
            dataclasses.replace(model.capabilities, previews=False)
        self._warm_shapes: dict[tuple, dict[str, set[int]]] = {}  # --compile: values warmed up per shape

    def describe(self) -> dict[str, Any]:
        settings = self.model.cache.settings
        return {"pipeline": type(self.model.pipe).__name__, "device": self.model.device,
                "dtype": str(self.model.dtype).removeprefix("torch."),
                "cache": dict(settings.__dict__) if settings else None, "compile": self.model.compile}

    def _kwargs(self, requests: list[GenerationRequest]) -> dict[str, Any]:
        """One call for every request (they share a batch key): one prompt and one generator per output. A lone
        request keeps `num_images_per_prompt`, so it makes exactly the call it would make unbatched."""
        caps = self.model.capabilities
        first = requests[0]
        prompt: str | list[str]
        if len(requests) == 1:
            prompt, per_prompt = first.prompt, first.num_outputs
        else:
            prompt = [r.prompt for r in requests for _ in range(r.num_outputs)]
            per_prompt = 1
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "num_inference_steps": first.num_inference_steps,
            caps.batch_keyword: per_prompt,
            # CPU generators: the same noise whatever the device, device map, offloading or batch.
            "generator": [torch.Generator("cpu").manual_seed(s) for r in requests for s in r.seeds],
            "output_type": "np",
            **caps.size_arguments(first.width, first.height),
            **call_arguments(requests, caps),
            **{k: v for k, v in self.model.hints.get("call_arguments", {}).items() if caps.accepts(k)},
        }
        if first.images:  # input images never batch (see GenerationRequest.batch_key)
            many = caps.max_input_images > 1
            kwargs["image"] = list(first.images) if many else first.images[0]
        return kwargs

    def _count_tokens(self, prompt: str) -> int:
        """The prompt's length in tokens of the model's main text encoder (T5 for Flux), for usage reports."""
        pipe = self.model.pipe
        tokenizer = (getattr(pipe, "tokenizer_2", None) or getattr(pipe, "tokenizer", None)
                     or getattr(getattr(pipe, "processor", None), "tokenizer", None))
        if tokenizer is None or not prompt:
            return 0
        try:
            return len(tokenizer(prompt, add_special_tokens=False, truncation=False)["input_ids"])
        except Exception:  # noqa: BLE001 - usage is informative; never fail a request over it
            return 0

    def _attach_preview(self, progress: Progress, pipeline, family: str, estimate: DenoisedEstimate,
                        callback_kwargs: dict, request: GenerationRequest) -> None:
        """Decode a partial image into `progress`. A preview that fails is skipped: never the request."""
        latents = estimate.latents()
        if latents is None:
            latents = callback_kwargs["latents"]
        try:
            decoded = decode_preview(pipeline, family, latents, request.width, request.height,
                                     offloaded_to=self.model.device if self.model.offloaded else None)
        except Exception:  # noqa: BLE001 - logged; the generation goes on
            logger.warning("request %s: decoding a partial image failed", request.request_id, exc_info=True)
            return
        progress.previews = to_uint8(decoded)

    def _warm_up(self, requests: list[GenerationRequest], kwargs: dict[str, Any]) -> None:
        """With --compile, a short call (the model's fewest steps) compiles for a new shape before the real call,
        under the same `inference_mode` (so the real call finds the graph it needs). The shape is what the tensors
        depend on: task, size, frames, input image sizes. Batch size and prompt length vary within a shape, and
        torch's automatic dynamic shapes make a dimension dynamic once it has taken two values, so each of those is
        warmed up for its first two values only."""
        if not self.model.compile:
            return
        first = requests[0]
        shape = (first.task, first.width, first.height, first.num_frames, tuple(image.size for image in first.images))
        varying = {"outputs": sum(r.num_outputs for r in requests),
                   "prompt_tokens": max(self._count_tokens(r.prompt) for r in requests)}
        seen = self._warm_shapes.setdefault(shape, {name: set() for name in varying})
        new = [name for name, value in varying.items() if value not in seen[name] and len(seen[name]) < 2]
        if not new:
            return
        logger.info("compile warm-up for shape %s (%s)", shape, ", ".join(f"{n}={varying[n]}" for n in new))
        started = time.perf_counter()
        self.model.pipe(**{**kwargs, "num_inference_steps": self.capabilities.min_steps, "callback_on_step_end": None,
                           "generator": None})  # fresh RNG: the request's generators stay unused
        for name, value in varying.items():
            seen[name].add(value)
        logger.info("warm-up done in %.1fs", time.perf_counter() - started)

    def run(self, request: GenerationRequest, cancelled: threading.Event,
            on_progress: ProgressCallback | None = None) -> GenerationResult:
        """One request alone."""
        return self.run_batch([request], cancelled, on_progress)[0]

    def run_batch(self, requests: list[GenerationRequest], cancelled: threading.Event,
                  on_progress: ProgressCallback | None = None) -> list[GenerationResult]:
        """One pipeline call for requests that share a batch key; a result per request, in order. `cancelled`
        stops the call at the next step; previews in `on_progress` cover every output of the call. With several
        ranks every rank makes this call in step: see `distributed.ranks.StepSync`."""
        sync = self.step_sync
        if sync is None:
            if cancelled.is_set():
                raise RequestCancelled()
            output, started, finished = self._call(requests, cancelled, on_progress)
        else:
            sync.begin()
            try:
                output, started, finished = self._call(requests, cancelled, on_progress)
                if sync(False, False)[1]:  # a rank failed after the last step (e.g. in the VAE)
                    raise PeerFailed("another rank failed this call")
            except (RequestCancelled, PeerFailed, RanksLost):
                raise  # every rank learnt it from the same StepSync: nothing more to tell
            except Exception:
                sync(False, True)  # tell the others, at the point where they wait for this rank
                raise
            finally:
                sync.end()
        if cancelled.is_set():
            raise RequestCancelled()
        return self._results(requests, output, started, finished)

    def _call(self, requests: list[GenerationRequest], cancelled, on_progress: ProgressCallback | None):
        first = requests[0]
        pipe = self.model.pipe
        kwargs = self._kwargs(requests)
        total = first.num_inference_steps
        family = self.capabilities.preview_layout if first.partial_images and self.capabilities.previews else None
        previews_at = preview_steps(total, first.partial_images) if family else []
        estimate = DenoisedEstimate(pipe.scheduler if previews_at else None)
        sync = self.step_sync

        def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
            if on_progress is not None and not cancelled.is_set():
                synchronize(self.model.device)  # the step's kernels are done, not just queued
                progress = Progress(step=step + 1, total_steps=total)
                if family is not None and step + 1 in previews_at:
                    self._attach_preview(progress, pipeline, family, estimate, callback_kwargs, first)
                    progress.preview_index = previews_at.index(step + 1)
                on_progress(progress)
            stop = cancelled.is_set()
            if sync is not None:
                stop, failed = sync(stop, False)  # rank 0's decision, on every rank at this same step
                if failed:
                    raise PeerFailed("another rank failed this call")
            if stop:
                # Leave at once: `pipeline._interrupt` would still run the remaining loop and the VAE decode,
                # which for a video can take longer than the steps. cache-dit resets its state on every call.
                raise RequestCancelled()
            return callback_kwargs

        if self.model.capabilities.accepts("callback_on_step_end"):
            kwargs["callback_on_step_end"] = on_step_end
        with torch.inference_mode():
            self._warm_up(requests, kwargs)
            self.model.cache.prepare(total, first.cache,
                                     separate_cfg=separate_guidance(self.capabilities.separate_cfg, first, pipe))
            started = time.time()
            with estimate:
                output = pipe(**kwargs)
        return output, started, time.time()

    def _results(self, requests: list[GenerationRequest], output, started: float,
                 finished: float) -> list[GenerationResult]:
        """The call's outputs as uint8 arrays, split back into one result per request."""
        first = requests[0]
        cache = self.model.cache.stats(first.num_inference_steps)
        audio = None
        if first.task.is_video:
            outputs = to_uint8(output.frames)
            outputs = outputs[None] if outputs.ndim == 4 else outputs  # a single video without the batch axis
            audio = self._audio(output)
        else:
            outputs = to_uint8(output.images)
            outputs = outputs[None] if outputs.ndim == 3 else outputs
        results, offset = [], 0
        for request in requests:
            mine = slice(offset, offset + request.num_outputs)
            offset += request.num_outputs
            results.append(GenerationResult(
                seeds=request.seeds, started_at=started, finished_at=finished, cache=cache,
                prompt_tokens=self._count_tokens(request.prompt),
                videos=outputs[mine] if request.task.is_video else None,
                images=None if request.task.is_video else outputs[mine],
                audio=audio[mine] if audio is not None else None,
                audio_sample_rate=self.capabilities.audio_sample_rate if audio is not None else None))
        return results

    def _audio(self, output) -> np.ndarray | None:
        """The family's soundtrack output (LTX-2: a tensor (N, channels, samples) on the vocoder's device), as
        float32 numpy; None for families without audio."""
        spec = self.capabilities.audio
        track = getattr(output, spec.attribute, None) if spec is not None else None
        if track is None or self.capabilities.audio_sample_rate is None:
            return None
        if isinstance(track, torch.Tensor):
            track = track.detach().float().cpu().numpy()
        track = np.asarray(track, dtype=np.float32)
        return track[None] if track.ndim == 2 else track

    def flush(self) -> None:
        self.model.cache.flush()

    def release_memory(self) -> None:
        """Return the memory of finished calls to the device (after an out-of-memory error, or when idle)."""
        gc.collect()
        if self.model.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def memory(self) -> dict[str, float] | None:
        """The accelerator's memory figures (bytes), for /metrics; None on the CPU."""
        return cuda_memory(self.model.device)

