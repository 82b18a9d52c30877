"""Tiny pipelines (being written)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["BUILDERS"]

BUILDERS: dict[str, Callable[[], tuple]] = {}
