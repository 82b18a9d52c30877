"""Driving /playground in headless Chromium (Debian's package) with Playwright: shared by the browser test and
`scripts/playground_screenshot.py`, so that the README's screenshot comes from the tested path."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["chromium_executable", "chromium_page", "generate_image", "generate_video"]


def chromium_executable() -> str | None:
    """The installed Chromium (Debian's `chromium` package), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium_page(width: int = 1100, height: int = 900) -> Iterator:
    """A page in the system's headless Chromium (no browser download: Playwright drives the installed one)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    if executable is None:
        raise RuntimeError("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def fill_and_generate(page, url: str, prompt: str, size: str, steps: int, images: list | None = None) -> None:
    page.goto(f"{url}/playground")
    page.wait_for_function("document.getElementById('model').textContent.includes(':')", timeout=60_000)
    if images:
        page.set_input_files("#images", [str(path) for path in images])
    page.fill("#prompt", prompt)
    page.fill("#size", size)
    page.fill("#steps", str(steps))
    page.fill("#seed", "7")
    page.click("#generate")


def generate_image(page, url: str, size: str = "128x128", steps: int = 6, images: list | None = None) -> dict:
    """Generate (or, with `images`, edit) one image; wait for the final <img> to render. Returns its natural size
    and the number of previews seen."""
    fill_and_generate(page, url, "a lighthouse on a cliff at dusk", size, steps, images)
    page.wait_for_function("(() => { const img = document.querySelector('img[data-final=\"true\"]');"
                           " return img && img.complete && img.naturalWidth > 0; })()", timeout=120_000)
    return page.evaluate("""() => {
        const img = document.querySelector('img[data-final="true"]');
        return {width: img.naturalWidth, height: img.naturalHeight,
                partials: Number(document.getElementById('results').dataset.partials)};
    }""")


def generate_video(page, url: str, size: str = "64x64", steps: int = 4) -> str:
    """Run a video job to completion; returns the <video> element's source."""
    fill_and_generate(page, url, "waves on a beach", size, steps)
    page.wait_for_selector("video[src]", timeout=120_000)
    return page.get_attribute("video", "src")
