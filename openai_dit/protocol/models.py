"""`GET /v1/models` and `GET /v1/models/{id}`: the served model, with what it can do. No torch here."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["IMAGE_MODEL_ALIASES", "VIDEO_MODEL_ALIASES", "ModelCard", "ModelList", "ModelNames"]

# OpenAI's own model names, accepted (unless turned off) as aliases of the served model on the routes they belong to,
# so that clients preset for OpenAI (Open WebUI's dall-e-2, LangChain's DallEAPIWrapper, SDK examples) work.
IMAGE_MODEL_ALIASES = ("dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")
VIDEO_MODEL_ALIASES = ("sora-2", "sora-2-pro")
_ALIASES = {"images": IMAGE_MODEL_ALIASES, "videos": VIDEO_MODEL_ALIASES}


class ModelNames(msgspec.Struct, frozen=True):
    """The names clients may send as `model`: the served names (the first is the one reported), and OpenAI's
    names per route unless `aliases` is off."""

    served: tuple[str, ...]
    aliases: bool = True

    @property
    def primary(self) -> str:
        return self.served[0]

    def accepts(self, name: str, route: str | None) -> bool:
        """`route`: "images" or "videos" (whose OpenAI names count), or None (any route's)."""
        if name in self.served:
            return True
        if not self.aliases:
            return False
        return any(name in names for kind, names in _ALIASES.items() if route in (None, kind))

    def listed(self, routes: tuple[str, ...]) -> list[str]:
        """What a client can send, for the routes the model serves."""
        extra = [name for route in routes for name in _ALIASES[route]] if self.aliases else []
        return [*self.served, *extra]


class ModelCard(msgspec.Struct, kw_only=True):
    """OpenAI's Model object; `capabilities` (tasks, sizes, inputs) is this server's addition."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "openai-dit"
    capabilities: dict | None = None


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelCard]
