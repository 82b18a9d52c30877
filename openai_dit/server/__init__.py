"""The HTTP layer: the Litestar app, its controllers and exception handlers."""

from .app import create_app

__all__ = ["create_app"]
