"""Make the README's screenshot of /playground (docs/playground.png) through the browser test's own path.

    python scripts/playground_screenshot.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from conftest import running_server  # noqa: E402
from playground_driver import chromium_page, generate_image  # noqa: E402


def main() -> int:
    target = ROOT / "docs" / "playground.png"
    with running_server("--model-path", "tiny:flux") as url, chromium_page(width=1000, height=760) as page:
        generate_image(page, url, size="256x256", steps=8)
        page.screenshot(path=str(target))
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
