"""cache-dit on a served pipeline: enabling it from the CLI settings, per-request step masks, stats, flushing."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass

import torch

from ..types import CacheStats

__all__ = ["CacheController", "CacheSettings", "count_blocks"]

logger = logging.getLogger("openai_dit.cache")


@dataclass(frozen=True)
class CacheSettings:
    Fn: int = 8
    Bn: int = 0
    rdt: float = 0.08
    max_warmup_steps: int = 8
    max_cached_steps: int = -1
    max_continuous_cached_steps: int = -1
    taylorseer: bool = False
    taylorseer_order: int = 1
    scm_policy: str | None = None


def count_blocks(pipe) -> int:
    """The fewest blocks in any block list of any transformer: the bound for Fn + Bn."""
    counts = []
    for name in ("transformer", "transformer_2"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        for child_name, child in module.named_children():
            if "blocks" in child_name and isinstance(child, torch.nn.ModuleList) and len(child) > 0:
                counts.append(len(child))
    return min(counts) if counts else 0


class CacheController:
    """Owns cache-dit on one pipeline. Called only from the thread that runs the pipeline."""

    def __init__(self, pipe, settings: CacheSettings | None) -> None:
        self._pipe = pipe
        self._settings = self._clamped(settings) if settings else None
        self._active_steps: int | None = None  # step count the current step mask was built for
        self._enabled = False
        if self._settings:
            self._enable(num_inference_steps=None)

    @property
    def settings(self) -> CacheSettings | None:
        return self._settings

    def _clamped(self, settings: CacheSettings) -> CacheSettings:
        blocks = count_blocks(self._pipe)
        if blocks and settings.Fn + settings.Bn > blocks:
            Fn = min(settings.Fn, blocks)
            Bn = max(0, min(settings.Bn, blocks - Fn))
            logger.warning("cache-dit: Fn=%d + Bn=%d exceed the model's %d blocks; clamped to Fn=%d, Bn=%d",
                           settings.Fn, settings.Bn, blocks, Fn, Bn)
            return CacheSettings(**{**settings.__dict__, "Fn": Fn, "Bn": Bn})
        return settings

    def _enable(self, num_inference_steps: int | None) -> None:
        import cache_dit
        from cache_dit import DBCacheConfig, TaylorSeerCalibratorConfig

        s = self._settings
        mask = None
        if s.scm_policy and num_inference_steps:
            mask = cache_dit.steps_mask(total_steps=num_inference_steps, mask_policy=s.scm_policy)
        config = DBCacheConfig(
            Fn_compute_blocks=s.Fn, Bn_compute_blocks=s.Bn, residual_diff_threshold=s.rdt,
            max_warmup_steps=s.max_warmup_steps, max_cached_steps=s.max_cached_steps,
            max_continuous_cached_steps=s.max_continuous_cached_steps,
            num_inference_steps=num_inference_steps if mask else None, steps_computation_mask=mask,
        )
        calibrator = TaylorSeerCalibratorConfig(taylorseer_order=s.taylorseer_order) if s.taylorseer else None
        cache_dit.enable_cache(self._pipe, cache_config=config, calibrator_config=calibrator)
        self._enabled = True
        self._active_steps = num_inference_steps if mask else None

    def _disable(self) -> None:
        import cache_dit

        if self._enabled:
            cache_dit.disable_cache(self._pipe)
            self._enabled = False

    def prepare(self, num_inference_steps: int) -> None:
        """Before a call: a step mask is built for the call's step count (rebuilt only when it changes)."""
        if not self._settings:
            return
        if not self._enabled or (self._settings.scm_policy and self._active_steps != num_inference_steps):
            self._disable()
            self._enable(num_inference_steps)

    def stats(self, total_steps: int) -> CacheStats:
        """Statistics of the call that just ran (cache-dit resets its pipeline context on every call)."""
        if not self._settings:
            return CacheStats(enabled=False, total_steps=total_steps)
        import cache_dit

        indices: set[int] = set()
        for entry in cache_dit.summary(self._pipe, logging=False) or []:
            indices.update(int(i) for i in (entry.cached_steps or []))
        return CacheStats(enabled=True, cached_steps=len(indices), total_steps=total_steps,
                          cached_step_indices=sorted(indices), options=cache_dit.strify(self._pipe))

    def flush(self) -> None:
        """Drop every cached tensor and context: hooks are removed and re-installed fresh."""
        if self._settings:
            self._disable()
            self._enable(None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
