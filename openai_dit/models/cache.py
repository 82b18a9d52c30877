"""cache-dit on a served pipeline: enabling it from the CLI settings, per-request step masks, stats, flushing."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, replace

import torch

from ..types import CacheStats

__all__ = ["CacheController", "CacheSettings", "count_blocks", "separate_guidance"]

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


def separate_guidance(rule: str | None, request, pipe) -> bool | None:
    """Whether this call runs separate guidance passes per step, by the family's rule (`families.Family`), so that
    cache-dit pairs its passes right; None: cache-dit's adapter knows."""
    if rule is None:
        return None
    if rule == "negative_prompt":
        return request.negative_prompt is not None
    if rule == "guidance":
        return request.guidance_scale is None or request.guidance_scale > 1  # None: the pipeline's default (> 1)
    if rule == "true_cfg":
        return request.negative_prompt is not None and (request.true_cfg_scale or 1.0) > 1
    if rule == "guider":
        return getattr(getattr(pipe, "guider", None), "guidance_scale", 1.0) > 1
    raise ValueError(f"unknown separate-guidance rule {rule!r}")


class CacheController:
    """Owns cache-dit on one pipeline. Called only from the thread that runs the pipeline.

    The server's settings apply to every call; a request may adjust the ones that only decide which steps are
    cached (`OVERRIDABLE`), or switch caching off for itself. cache-dit is re-enabled only when the effective
    settings (or, with a step mask, the step count) differ from the previous call's."""

    OVERRIDABLE = ("rdt", "max_warmup_steps", "max_cached_steps", "max_continuous_cached_steps", "scm_policy")

    def __init__(self, pipe, settings: CacheSettings | None, *, fixed: bool = False) -> None:
        self._pipe = pipe
        self._fixed = fixed  # several ranks: cache-dit cannot be re-applied over its parallelism hooks
        self._settings = self._clamped(settings) if settings else None
        # What cache-dit is enabled with now: settings, the step count of a step mask, the separate-CFG override.
        self._active: tuple[CacheSettings, int | None, bool | None] | None = None
        if self._settings:
            self._enable(self._settings, num_inference_steps=None)

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
            return replace(settings, Fn=Fn, Bn=Bn)
        return settings

    def _enable(self, s: CacheSettings, num_inference_steps: int | None, separate_cfg: bool | None = None) -> None:
        import cache_dit
        from cache_dit import DBCacheConfig, TaylorSeerCalibratorConfig

        mask = None
        if s.scm_policy and num_inference_steps:
            mask = cache_dit.steps_mask(total_steps=num_inference_steps, mask_policy=s.scm_policy)
        config = DBCacheConfig(
            Fn_compute_blocks=s.Fn, Bn_compute_blocks=s.Bn, residual_diff_threshold=s.rdt,
            max_warmup_steps=s.max_warmup_steps, max_cached_steps=s.max_cached_steps,
            max_continuous_cached_steps=s.max_continuous_cached_steps,
            num_inference_steps=num_inference_steps if mask else None, steps_computation_mask=mask,
            enable_separate_cfg=separate_cfg,
        )
        calibrator = TaylorSeerCalibratorConfig(taylorseer_order=s.taylorseer_order) if s.taylorseer else None
        cache_dit.enable_cache(self._pipe, cache_config=config, calibrator_config=calibrator)
        self._active = (s, num_inference_steps if mask else None, separate_cfg)

    def _disable(self) -> None:
        import cache_dit

        if self._active is not None:
            cache_dit.disable_cache(self._pipe)
            self._active = None

    def effective(self, overrides: dict | None) -> CacheSettings | None:
        """The settings a call runs with: the server's, adjusted by a request (None: no caching)."""
        if not self._settings or (overrides or {}).get("enabled") is False:
            return None
        changes = {k: v for k, v in (overrides or {}).items() if k in self.OVERRIDABLE and v is not None}
        if changes.get("scm_policy") == "none":
            changes["scm_policy"] = None
        return replace(self._settings, **changes)

    def prepare(self, num_inference_steps: int, overrides: dict | None = None,
                separate_cfg: bool | None = None) -> None:
        """Before a call: enable cache-dit with the call's effective settings and step mask. `separate_cfg=False`:
        this call makes one transformer pass per step although cache-dit's adapter expects separate guidance passes
        (Qwen-Image without a negative prompt); None: the adapter's own setting."""
        settings = self.effective(overrides)
        wanted = None if settings is None else \
            (settings, num_inference_steps if settings.scm_policy else None, separate_cfg)
        if wanted == self._active or self._fixed:  # fixed: per-request settings and step masks are refused
            return
        self._disable()
        if wanted is not None:
            self._enable(*wanted)

    def stats(self, total_steps: int) -> CacheStats:
        """Statistics of the call that just ran (cache-dit resets its pipeline context on every call)."""
        if self._active is None:
            return CacheStats(enabled=False, total_steps=total_steps)
        import cache_dit

        indices: set[int] = set()
        for entry in cache_dit.summary(self._pipe, logging=False) or []:
            indices.update(int(i) for i in (entry.cached_steps or []))
        return CacheStats(enabled=True, cached_steps=len(indices), total_steps=total_steps,
                          cached_step_indices=sorted(indices), options=cache_dit.strify(self._pipe))

    def flush(self) -> None:
        """Drop every cached tensor and context: hooks are removed and re-installed fresh (when fixed, only the
        memory is released: cache-dit resets its context on every call anyway)."""
        if not self._fixed:
            self._disable()
            if self._settings:
                self._enable(self._settings, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
