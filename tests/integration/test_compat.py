"""Third-party clients against the real server: LiteLLM, LangChain's DallEAPIWrapper, Open WebUI's request shapes,
the official `openai` npm package and the old cache-dit v1.3.5 client scripts (the suites in compat/), one server per
tiny model shared by its tests (tiny:flux, tiny:flux2-klein, tiny:wan-t2v), each started with an API key the clients
must send."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import running_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "compat-test-key"


def needs(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{package} is not installed: it belongs to the test extras (pip install -e '.[test]')")


def suite(url: str, script: str, *extra: str, steps: bool = True) -> str:
    """Run compat/`script` against `url` with the test API key; its output on failure."""
    path = ROOT / "compat" / script
    command = ["node", str(path)] if script.endswith(".mjs") else [sys.executable, str(path)]
    command += ["--url", url, "--api-key", API_KEY, *(["--steps", "2"] if steps else []), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script} {' '.join(extra)}:\n{done.stdout}{done.stderr[-3000:]}"
    assert "FAIL" not in done.stdout and "checks passed" in done.stdout, done.stdout
    return done.stdout


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The `openai` npm package, installed once under $OPENAI_DIT_TINY_CACHE/node (never in the repository)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the official openai npm package suite needs Node.js")
    folder = Path(os.environ.get("OPENAI_DIT_TINY_CACHE") or Path.home() / ".cache" / "openai-dit") / "node"
    if not (folder / "node_modules" / "openai" / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("node is installed but npm is not: cannot install the openai npm package")
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "openai"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"npm install openai into {folder} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return folder


# One server per model, shared by the tests of its class and stopped after them (one server runs at a time).
@pytest.fixture(scope="class")
def flux(tmp_path_factory):
    out = tmp_path_factory.mktemp("flux-out")
    with running_server("--model-path", "tiny:flux", "--cache", "--api-key", API_KEY, "--output-dir", str(out)) as url:
        yield url


@pytest.fixture(scope="class")
def klein(tmp_path_factory):
    out, media = tmp_path_factory.mktemp("klein-out"), tmp_path_factory.mktemp("klein-media")
    with running_server("--model-path", "tiny:flux2-klein", "--api-key", API_KEY, "--output-dir", str(out),
                        "--allowed-local-media-path", str(media), "--allow-private-urls") as url:
        url.media = media
        yield url


@pytest.fixture(scope="class")
def wan(tmp_path_factory):
    out = tmp_path_factory.mktemp("wan-out")
    with running_server("--model-path", "tiny:wan-t2v", "--api-key", API_KEY, "--output-dir", str(out)) as url:
        yield url


class TestFlux:
    """Text-to-image: every client's generation path (tiny:flux with cache-dit on, so include_stats has stats)."""

    def test_litellm_image_generation(self, flux):
        needs("litellm", "litellm")
        suite(flux, "litellm_client.py")

    def test_langchain_dalle_wrapper(self, flux):
        needs("langchain_community", "langchain-community")
        suite(flux, "langchain_dalle.py", steps=False)

    def test_open_webui_generations(self, flux):
        suite(flux, "open_webui.py")

    def test_openai_node_images(self, flux, node_modules):
        suite(flux, "openai_node.mjs", "--modules", str(node_modules))

    def test_cache_dit_text_to_image_scripts(self, flux):
        out = suite(flux, "cache_dit_clients.py")
        assert "ok   lightning_include_stats: enable_cache true" in out, out


class TestFlux2Klein:
    """Edits with one and several images (tiny:flux2-klein takes up to 4)."""

    def test_litellm_image_edit(self, klein):
        needs("litellm", "litellm")
        suite(klein, "litellm_client.py", "--only", "edit")

    def test_open_webui_edits(self, klein):
        suite(klein, "open_webui.py", "--only", "edit")

    def test_openai_node_edits(self, klein, node_modules):
        suite(klein, "openai_node.mjs", "--modules", str(node_modules), "--only", "images.edit")

    def test_cache_dit_flux2_edit_script(self, klein):
        out = suite(klein, "cache_dit_clients.py", "--only", "flux2_,edit_local", "--local-media-dir",
                    str(klein.media / "images"), "--http-images")
        assert "724x1080 -> 720x1072" in out and "ok   edit_local_paths" in out, out


class TestWanTextToVideo:
    """Video jobs through LiteLLM and the npm package, and the old Wan text-to-video script over /generate."""

    def test_litellm_video(self, wan):
        needs("litellm", "litellm")
        suite(wan, "litellm_client.py")

    def test_openai_node_videos(self, wan, node_modules):
        suite(wan, "openai_node.mjs", "--modules", str(node_modules))

    def test_cache_dit_wan_t2v_script(self, wan):
        suite(wan, "cache_dit_clients.py")
