"""The services a route handler may ask for, injected by name (Litestar dependencies), typed."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from litestar.di import NamedDependency, Provide

from ..config import ServerConfig
from ..runner import Runner
from ..serving.images import ImagesService
from ..serving.native import NativeService
from ..serving.videos import VideosService
from .lifecycle import Lifecycle

__all__ = ["ConfigDep", "ImagesDep", "LifecycleDep", "NativeDep", "RunnerDep", "Services", "StartedAt", "VideosDep"]


@dataclass(frozen=True)
class Services:
    """One app's services. A handler names the ones it needs as parameters (`images: ImagesService`)."""

    config: ServerConfig
    runner: Runner
    native: NativeService
    images: ImagesService
    videos: VideosService
    lifecycle: Lifecycle
    started_at: int  # when the server started (Unix seconds): the models' `created`

    def dependencies(self) -> dict[str, Provide]:
        """Litestar's `dependencies=`: each service under its field name."""
        return {field.name: Provide(_constant(getattr(self, field.name)), use_cache=True, sync_to_thread=False)
                for field in fields(self)}


def _constant(value: Any):
    def provide() -> Any:
        return value
    return provide


# What a handler's parameter says to get one service (by its name: `images: ImagesDep`).
ConfigDep = NamedDependency[ServerConfig]
RunnerDep = NamedDependency[Runner]
NativeDep = NamedDependency[NativeService]
ImagesDep = NamedDependency[ImagesService]
VideosDep = NamedDependency[VideosService]
LifecycleDep = NamedDependency[Lifecycle]
StartedAt = NamedDependency[int]
