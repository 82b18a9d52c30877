#!/usr/bin/env python3
"""The README's generated tables: the CLI flags (from the config) and the model families (from the family table and
the built-in tiny models). `--check` fails when README.md is out of date; `--write` updates it in place.

    python scripts/readme_tables.py --write
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openai_dit.config import flag_table  # noqa: E402
from openai_dit.config_sources import env_name  # noqa: E402

README = ROOT / "README.md"
_BLOCK = re.compile(r"(<!-- (?P<name>[a-z-]+):begin -->\n).*?(<!-- (?P=name):end -->)", re.S)


def flags() -> str:
    rows = ["| flag | variable / file key | default | what it does |", "|---|---|---|---|"]
    rows += [f"| `{flag}` | `{env_name(flag)}` / `{flag.lstrip('-')}` | "
             f"{f'`{default}`' if default and default != 'off' else default} | {text} |"
             for flag, default, text in flag_table()]
    return "\n".join(rows)


def _tiny_models() -> dict[str, list[str]]:
    """Pipeline class -> the built-in tiny models of it (built on first use)."""
    from openai_dit.models.tiny import BUILTIN_MODELS, builtin_model_dir

    by_class: dict[str, list[str]] = {}
    for name in sorted(BUILTIN_MODELS):
        index = json.loads((builtin_model_dir(name) / "model_index.json").read_text())
        by_class.setdefault(index["_class_name"], []).append(name)
    return by_class


def families() -> str:
    from openai_dit.models.families import FAMILIES

    tiny = _tiny_models()
    rows = ["| family | pipeline | built-in tiny model | tasks (input images) | sizes | frames | defaults | "
            "`--cache` |", "|---|---|---|---|---|---|---|---|"]
    for pipeline, family in FAMILIES.items():
        tasks = ", ".join(sorted(task.value for task in family.tasks))
        if family.max_input_images:
            tasks += f" (up to {family.max_input_images})" if family.max_input_images > 1 else " (1)"
        if family.mask_required:
            tasks += ", needs a mask"
        sizes = "its buckets (`sizes` in /v1/models)" if family.size_buckets else f"multiples of {family.size_multiple}"
        frames = f"{family.frames}" if family.frames else ""
        if family.fps_keyword:
            frames += f", `{family.fps_keyword}`"
        if family.audio:
            frames += ", audio track"
        width, height = family.default_size or (1024, 1024)
        defaults = [f"{width}x{height}"]
        defaults += [f"{family.default_frames} frames at {family.default_fps} fps"] if family.frames else []
        defaults += [f"{family.default_steps} steps"] if family.default_steps else []
        defaults += [f"guidance {family.default_guidance:g}"] if family.default_guidance is not None else []
        cache = "refused at start-up" if family.cache_refused else "DBCache"
        names = ", ".join(f"`{name}`" for name in tiny.get(pipeline, []))
        rows.append(f"| {family.name} | `{pipeline}` | {names} | {tasks} | {sizes} | {frames} | "
                    f"{', '.join(defaults)} | {cache} |")
    return "\n".join(rows)


TABLES = {"flags": flags, "families": families}


def rendered(text: str) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + TABLES[m.group("name")]() + "\n" + m.group(3), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args()
    text = README.read_text()
    new = rendered(text)
    if args.write:
        README.write_text(new)
        return 0
    if new != text:
        print("README.md tables are out of date: python scripts/readme_tables.py --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
