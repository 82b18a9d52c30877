"""Built-in tiny models: randomly initialised pipelines with fixed (seeded) weights, built offline.

`tiny:<family>` and `small:<family>` names resolve to a directory under the cache, built once with
`save_pretrained` and then loaded through the same `from_pretrained` path a real model takes. Each family's
builders live in a module of this package (its `BUILDERS`); a builder returns the pipeline and the hints written
beside it (`HINTS_FILE`: the tiny model's small default sizes, and any loading hints).
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal, overload

from ...config import BOOLEAN_WORDS

__all__ = ["BUILTIN_MODELS", "HINTS_FILE", "builtin_model_dir", "builtin_names", "is_builtin", "write_builtin"]

HINTS_FILE = "openai_dit.json"
_FORMAT_VERSION = "5"
# The modules of this package that hold builders, each a dict name -> builder named BUILDERS.
_MODULES = ("flux", "qwen", "image_dits", "wan", "hunyuan_video", "mochi", "ltx")


def _all_builders() -> dict[str, Callable[[], tuple]]:
    builders: dict[str, Callable[[], tuple]] = {}
    for name in _MODULES:
        builders.update(importlib.import_module(f"{__name__}.{name}").BUILDERS)
    return builders


BUILTIN_MODELS: dict[str, Callable[[], tuple]] = _all_builders()


def builtin_names() -> list[str]:
    return sorted(BUILTIN_MODELS)


# Components that stand in for an upstream class are recorded under that class, as in a real checkpoint;
# the loader substitutes the stand-in where the upstream class cannot load (see `loader.py`).
_UPSTREAM_CLASSES = {"Qwen2VLImageOnlyProcessor": ["transformers", "Qwen2VLProcessor"]}


def _record_upstream_classes(model_index: Path) -> None:
    index = json.loads(model_index.read_text())
    for key, value in index.items():
        if isinstance(value, list) and len(value) == 2 and value[1] in _UPSTREAM_CLASSES:
            index[key] = _UPSTREAM_CLASSES[value[1]]
    model_index.write_text(json.dumps(index, indent=2))


def is_builtin(model_path: str) -> bool:
    return model_path.startswith(("tiny:", "small:"))


def _cache_root() -> Path:
    """$OPENAI_DIT_TINY_CACHE, else $OPENAI_DIT_CACHE when it names a folder (its meaning before it became --cache's
    variable), else the XDG cache folder."""
    legacy = os.environ.get("OPENAI_DIT_CACHE", "")
    if legacy.strip().lower() in ("", *BOOLEAN_WORDS):
        legacy = ""
    root = os.environ.get("OPENAI_DIT_TINY_CACHE") or legacy or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "openai-dit")
    return Path(root) / "builtin"


def _check_name(name: str) -> None:
    if name not in BUILTIN_MODELS:
        raise KeyError(f"unknown built-in model {name!r}; known: {', '.join(sorted(BUILTIN_MODELS))}")


def write_builtin(name: str, directory: str | os.PathLike) -> Path:
    """Build the built-in model `name` and save it to `directory` (loadable by plain diffusers)."""
    _check_name(name)
    pipe, hints = BUILTIN_MODELS[name]()
    directory = Path(directory)
    pipe.save_pretrained(directory, safe_serialization=True)
    _record_upstream_classes(directory / "model_index.json")
    (directory / HINTS_FILE).write_text(json.dumps({"builtin": name, "version": _FORMAT_VERSION, **hints}))
    return directory


@overload
def builtin_model_dir(name: str, *, build: Literal[True] = ...) -> Path: ...
@overload
def builtin_model_dir(name: str, *, build: bool) -> Path | None: ...
def builtin_model_dir(name: str, *, build: bool = True) -> Path | None:
    """The cached directory of a built-in model, built on first use (safe across processes). `build=False`: the
    directory if it is built already, else None."""
    _check_name(name)
    root = _cache_root()
    target = root / f"{name.replace(':', '-')}-v{_FORMAT_VERSION}"
    if not build:
        return target if (target / HINTS_FILE).exists() else None
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / HINTS_FILE).exists():
            staging = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
            try:
                write_builtin(name, staging)
                shutil.rmtree(target, ignore_errors=True)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target

