"""Drive a running openai-dit server through LangChain's `DallEAPIWrapper` (langchain-community), pointed at it
with nothing but `base_url`.

    python compat/langchain_dalle.py --url http://127.0.0.1:8000 [--api-key K] [--steps 2]

What the wrapper sends (langchain-community 0.4): `images.generate(prompt, n, size, model[, quality])` through the
openai SDK: its default model is `dall-e-2` at 1024x1024, never a `response_format` and no way to pass extension
fields (`model_kwargs` are dropped), and it reads only `data[i].url`, joined with "\\n". So the server must answer a
dall-e request without `response_format` with absolute `url`s that download as images. `--steps` is unused: the
wrapper cannot send a step count (the defaults run the model's default steps; `quality` picks fewer).
One line per check; exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import sys
import warnings

import httpx

warnings.simplefilter("ignore", DeprecationWarning)  # langchain-community warns at import that it is being sunset

from langchain_community.tools.openai_dalle_image_generation import OpenAIDALLEImageGenerationTool  # noqa: E402
from langchain_community.utilities.dalle_image_generator import DallEAPIWrapper  # noqa: E402
from PIL import Image  # noqa: E402


def download(url: str) -> Image.Image:
    assert url.startswith(("http://", "https://")), f"run() must return an absolute http URL, got {url!r}"
    got = httpx.get(url, timeout=60)
    assert got.status_code == 200, f"GET {url}: {got.status_code} {got.text[:200]}"
    assert got.headers.get("content-type") == "image/png", f"GET {url}: content-type {got.headers.get('content-type')}"
    image = Image.open(io.BytesIO(got.content))
    assert image.format == "PNG", image.format
    return image


class Suite:
    def __init__(self, url: str, api_key: str) -> None:
        self.base_url = url.rstrip("/") + "/v1"
        self.api_key = api_key
        cards = httpx.get(f"{self.base_url}/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        assert cards.status_code == 200, f"GET /v1/models: {cards.status_code} {cards.text[:300]}"
        self.caps = cards.json()["data"][0].get("capabilities") or {}
        self.tasks = self.caps.get("tasks", [])
        multiple = self.caps.get("size_multiple") or 16
        side = multiple * max(1, 64 // multiple)
        self.side = side
        self.size = f"{side}x{side}"

    def wrapper(self, **fields) -> DallEAPIWrapper:
        return DallEAPIWrapper(api_key=self.api_key, base_url=self.base_url, max_retries=0, **fields)

    def defaults(self) -> str:
        """Everything left at LangChain's defaults: dall-e-2, 1024x1024, n=1, no quality."""
        url = self.wrapper().run("a cat")
        image = download(url)
        assert image.size == (1024, 1024), image.size
        return f"dall-e-2 1024x1024 -> {url.split('/v1/')[0]}/v1/... PNG {image.size}"

    def dall_e_3(self) -> str:
        url = self.wrapper(model="dall-e-3", size=self.size, quality="standard").run("a lighthouse at dusk")
        image = download(url)
        assert image.size == (self.side, self.side), image.size
        return f"dall-e-3 {self.size} quality=standard -> PNG {image.size}"

    def several(self) -> str:
        urls = self.wrapper(n=2, size=self.size, quality="low").run("two red kites")
        parts = urls.split("\n")
        assert len(parts) == 2 and len(set(parts)) == 2, \
            f"n=2 must give two different URLs joined by a newline: {urls!r}"
        for url in parts:
            assert download(url).size == (self.side, self.side)
        return "n=2 -> two URLs"

    def tool(self) -> str:
        """The agent tool around the wrapper (what LangChain agents call)."""
        tool = OpenAIDALLEImageGenerationTool(api_wrapper=self.wrapper(model="dall-e-3", size=self.size,
                                                                       quality="low"))
        url = tool.invoke("a small boat")
        download(url)
        return "OpenAIDALLEImageGenerationTool.invoke -> URL"

    def refused(self) -> str:
        """A model that cannot make images from text: the SDK error surfaces from run()."""
        import openai

        try:
            self.wrapper(size=self.size).run("a cat")
        except openai.BadRequestError as exc:
            return f"400 as expected: {exc.body.get('message') if isinstance(exc.body, dict) else exc}"
        raise AssertionError("a model without text-to-image answered a generation")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--steps", type=int, default=2, help="unused: the wrapper cannot send a step count")
    parser.add_argument("--only", default="", help="run only the checks whose name contains one of these "
                                                    "comma-separated words")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    suite = Suite(args.url, args.api_key)
    print(f"langchain-community {importlib.metadata.version('langchain-community')}: tasks {suite.tasks}")
    if "text-to-image" in suite.tasks:
        checks = [suite.defaults, suite.dall_e_3, suite.several, suite.tool]
    else:
        checks = [suite.refused]
    if args.only:
        checks = [c for c in checks if any(word in c.__name__ for word in args.only.split(","))]
    for check in checks:
        try:
            detail = check()
        except Exception as exc:  # noqa: BLE001 - report the first failure clearly, then stop
            print(f"FAIL {check.__name__}: {type(exc).__name__}: {exc}")
            return 1
        print(f"ok   {check.__name__}: {detail}")
    print(f"langchain DallEAPIWrapper: all {len(checks)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
