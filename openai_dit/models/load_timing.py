"""How long loading took, by component and by phase, for the start-up log.

diffusers loads a pipeline's components one by one in `load_sub_model` (called with the component's `name`), inside
`DiffusionPipeline.from_pretrained`; `component_times` times each of those calls while the pipeline loads. What the
call spends outside them (resolving or downloading the files, building the pipeline) is reported as `files`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

__all__ = ["LoadTimes", "component_times"]

logger = logging.getLogger("openai_dit.loader")


class LoadTimes:
    """Seconds per component (as diffusers names them) and per later phase (lora, placing, quantize, ...)."""

    def __init__(self) -> None:
        self.components: dict[str, float] = {}
        self.phases: dict[str, float] = {}
        self._began = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - began

    @property
    def total(self) -> float:
        return time.perf_counter() - self._began

    def log(self, model: str) -> None:
        components = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in
                               sorted(self.components.items(), key=lambda item: -item[1]))
        phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.phases.items())
        logger.info("loaded %s in %.2f s: components: %s; %s", model, self.total, components or "none", phases)


@contextlib.contextmanager
def component_times(times: LoadTimes) -> Iterator[None]:
    """Within: each component diffusers loads is timed into `times.components`. Where diffusers has no
    `load_sub_model` (another version), nothing is timed per component and loading is unchanged."""
    from diffusers.pipelines import pipeline_utils

    original = getattr(pipeline_utils, "load_sub_model", None)
    if original is None:
        yield
        return

    def timed(*args, **kwargs):
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            name = str(kwargs.get("name", "?"))
            times.components[name] = times.components.get(name, 0.0) + time.perf_counter() - began

    pipeline_utils.load_sub_model = timed
    try:
        yield
    finally:
        pipeline_utils.load_sub_model = original
