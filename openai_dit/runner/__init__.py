"""The runner: admission queue and the generation thread that owns the pipeline."""

from .runner import Engine, Runner

__all__ = ["Engine", "Runner"]
