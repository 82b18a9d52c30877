"""The one exception of model loading."""

from __future__ import annotations

__all__ = ["StartupError"]


class StartupError(RuntimeError):
    """The server cannot start as configured; the message says why and what to change."""
