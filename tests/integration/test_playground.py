"""/playground in a real headless browser against the real server: an image streamed in after its previews, a
video job run to completion, and an API error shown as the API states it. Screenshots go to a temporary folder."""

from __future__ import annotations

import os

import httpx
import pytest

from .conftest import running_server
from .playground_driver import chromium_executable, chromium_page, fill_and_generate, generate_image, generate_video

# `.ci/run` sets this: there a missing browser fails the run instead of skipping its tests.
REQUIRE_BROWSER = "OPENAI_DIT_REQUIRE_BROWSER"


@pytest.fixture
def browser() -> None:
    """Skip (with the reason in the summary) where Chromium is not installed, unless $OPENAI_DIT_REQUIRE_BROWSER."""
    if chromium_executable() is not None:
        return
    if os.environ.get(REQUIRE_BROWSER):
        pytest.fail(f"${REQUIRE_BROWSER} is set but Chromium is not installed (apt-get install chromium)")
    pytest.skip("Chromium is not installed (apt-get install chromium): the playground's browser tests are skipped")


def test_the_page_is_served_from_the_package_without_external_assets():
    with running_server("--model-path", "tiny:flux") as url:
        page = httpx.get(f"{url}/playground")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "http://" not in page.text and "https://" not in page.text
        for asset in ("playground.js", "playground.css"):
            response = httpx.get(f"{url}/playground/{asset}")
            assert response.status_code == 200 and "https://" not in response.text
        assert httpx.get(f"{url}/playground/../../etc/passwd").status_code == 404
        assert httpx.get(f"{url}/playground/index.py").status_code == 404


def test_an_image_streams_in_and_an_error_is_shown(tmp_path, browser):
    with running_server("--model-path", "tiny:flux") as url, chromium_page() as page:
        shown = generate_image(page, url)
        assert shown["width"] == 128 and shown["height"] == 128 and shown["partials"] >= 1
        page.screenshot(path=str(tmp_path / "playground-image.png"), full_page=True)
        print(f"screenshot: {tmp_path / 'playground-image.png'}")
        fill_and_generate(page, url, "a boat", "100x100", 2)
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        message = page.text_content("#error")
        assert "size 100x100 cannot be produced exactly" in message and "(size)" in message
        page.screenshot(path=str(tmp_path / "playground-error.png"), full_page=True)


def test_a_video_job_runs_to_a_playable_video(tmp_path, browser):
    with running_server("--model-path", "tiny:wan-t2v") as url, chromium_page(width=420, height=900) as page:
        source = generate_video(page, url)
        assert source.startswith("blob:")
        assert page.get_attribute("#progress", "value") == "100"
        page.wait_for_function("document.querySelector('video').readyState >= 1", timeout=30_000)
        assert page.evaluate("document.querySelector('video').duration") > 0  # the MP4 decodes in the browser
        page.screenshot(path=str(tmp_path / "playground-video-phone.png"), full_page=True)


def test_an_edit_with_two_uploaded_images(tmp_path, browser):
    from PIL import Image

    paths = []
    for index, color in enumerate(((220, 30, 30), (30, 30, 220))):
        paths.append(tmp_path / f"input-{index}.png")
        Image.new("RGB", (96, 64), color).save(paths[-1])
    with running_server("--model-path", "tiny:flux2-klein") as url, chromium_page() as page:
        shown = generate_image(page, url, size="64x64", steps=2, images=paths)
        assert (shown["width"], shown["height"]) == (64, 64)
        assert page.evaluate("document.getElementById('images').multiple") is True
        assert len(page.query_selector_all("#chosen li")) == 2
