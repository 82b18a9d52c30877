"""`GET /v1/models` and `GET /v1/models/{id}`: the served model, with what it can do. No torch here."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["ModelCard", "ModelList"]


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
