"""Replay Open WebUI's "openai" image engine against a running openai-dit server: the requests Open WebUI 0.12
builds (`open_webui/routers/images.py`, `image_generations` and `image_edits`), sent with httpx exactly as it sends
them, and the answers read the way it reads them.

    python compat/open_webui.py --url http://127.0.0.1:8000 [--api-key K] [--steps 2]

Generation: `POST {IMAGES_OPENAI_API_BASE_URL}/images/generations`, JSON
`{"model": IMAGE_GENERATION_MODEL or "dall-e-2", "prompt", "n": 1, "size": IMAGE_SIZE (default "512x512"),
"response_format": "b64_json" (left out when IMAGE_GENERATION_MODEL matches IMAGE_URL_RESPONSE_MODELS_REGEX_PATTERN,
default "^gpt-image"), **IMAGES_OPENAI_PARAMS}`: the admin's extra JSON is merged in verbatim (that is how Open WebUI
users pass num_inference_steps and the like). Edits: multipart with `model` (IMAGE_EDIT_MODEL, default ""),
`prompt`, `n`/`size`/`background` only when set, the same `response_format` rule, then the image files: one under
`image`, several as repeated `image[]`, named `<uuid>.<ext>` with the data URL's mime type; IMAGES_OPENAI_PARAMS is
not sent with edits. Answers: any non-2xx aborts (`raise_for_status`); each `data[i]` with a `url` is fetched (the
Authorization header forwarded only to the same origin; it must be absolute http(s) with an `image/*` type), else
`b64_json` is decoded (a `data:` prefix allowed, raw base64 sniffed with PIL).
One line per check; exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import sys
import uuid
from urllib.parse import urlparse

import httpx
from PIL import Image

IMAGE_FILE_EXTENSIONS = {"image/jpeg": ".jpg", "image/jpg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


def data_url(width: int, height: int, color, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


class OpenWebUI:
    """The request building and answer reading of Open WebUI's openai engine, for one admin configuration."""

    def __init__(self, base_url: str, api_key: str, **config) -> None:
        self.base = base_url  # IMAGES_OPENAI_API_BASE_URL = IMAGES_EDIT_OPENAI_API_BASE_URL
        self.key = api_key
        self.config = {"IMAGE_GENERATION_MODEL": "", "IMAGE_SIZE": "512x512", "IMAGES_OPENAI_API_PARAMS": {},
                       "IMAGE_URL_RESPONSE_MODELS_REGEX_PATTERN": "^gpt-image", "IMAGE_EDIT_MODEL": "",
                       "IMAGE_EDIT_SIZE": "", **config}

    def _same_origin(self, url: str) -> bool:
        a, b = urlparse(url), urlparse(self.base)
        port = {"http": 80, "https": 443}
        return a.scheme == b.scheme and a.hostname == b.hostname and \
            (a.port or port.get(a.scheme)) == (b.port or port.get(b.scheme))

    def _url_model(self, configured: str) -> bool:
        return bool(re.match(self.config["IMAGE_URL_RESPONSE_MODELS_REGEX_PATTERN"], configured))

    def generation_request(self, prompt: str, n: int = 1, size: str | None = None) -> dict:
        c = self.config
        return {
            "model": c["IMAGE_GENERATION_MODEL"] or "dall-e-2",
            "prompt": prompt,
            "n": n,
            **({"size": size or c["IMAGE_SIZE"]} if (size or c["IMAGE_SIZE"]) else {}),
            **({} if self._url_model(c["IMAGE_GENERATION_MODEL"]) else {"response_format": "b64_json"}),
            **({} if not c["IMAGES_OPENAI_API_PARAMS"] else c["IMAGES_OPENAI_API_PARAMS"]),
        }

    def generate(self, prompt: str, **kwargs) -> tuple[dict, httpx.Response]:
        data = self.generation_request(prompt, **kwargs)
        response = httpx.post(f"{self.base}/images/generations", json=data, timeout=600,
                              headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        return data, response

    def edit_request(self, prompt: str, image: str | list[str], n: int | None = None, size: str | None = None,
                     background: str | None = None, model: str | None = None):
        c = self.config
        if (c["IMAGE_EDIT_SIZE"] and "x" in c["IMAGE_EDIT_SIZE"]) or (size and "x" in size):
            size = size or c["IMAGE_EDIT_SIZE"]
        else:
            size = None
        data = {
            "model": c["IMAGE_EDIT_MODEL"] if model is None else model,
            "prompt": prompt,
            **({"n": n} if n else {}),
            **({"size": size} if size else {}),
            **({"background": background} if background else {}),
            **({} if self._url_model(c["IMAGE_EDIT_MODEL"]) else {"response_format": "b64_json"}),
        }
        images, name = ([image], "image") if isinstance(image, str) else (image, "image[]")
        files = []
        for img in images:  # get_image_file_item
            header, encoded = img.split(",", 1)
            mime = header.split(";")[0].removeprefix("data:") or "image/png"
            files.append((name, (f"{uuid.uuid4()}{IMAGE_FILE_EXTENSIONS.get(mime, '.png')}",
                                 base64.b64decode(encoded), mime)))
        return {key: str(value) for key, value in data.items()}, files

    def edit(self, prompt: str, image, **kwargs) -> tuple[dict, httpx.Response]:
        data, files = self.edit_request(prompt, image, **kwargs)
        response = httpx.post(f"{self.base}/images/edits", data=data, files=files, timeout=600,
                              headers={"Authorization": f"Bearer {self.key}"})
        return data, response

    def read(self, response: httpx.Response) -> list[Image.Image]:
        """What Open WebUI does with the answer: raise_for_status, then url (fetched) or b64_json per image."""
        assert response.is_success, f"HTTP {response.status_code}: {response.text[:400]}"
        images = []
        for item in response.json()["data"]:
            if url := item.get("url"):
                assert url.startswith(("http://", "https://")), f"Open WebUI cannot fetch a relative URL: {url!r}"
                headers = {"Authorization": f"Bearer {self.key}"} if self._same_origin(url) else None
                got = httpx.get(url, headers=headers, timeout=60)
                got.raise_for_status()
                assert got.headers.get("content-type", "").split("/")[0] == "image", \
                    f"{url} is not an image: {got.headers.get('content-type')}"
                images.append(Image.open(io.BytesIO(got.content)))
            else:
                b64 = item["b64_json"]
                raw = base64.b64decode(b64.split(",", 1)[1] if "," in b64 else b64)
                images.append(Image.open(io.BytesIO(raw)))
        return images


def served(url: str, key: str) -> tuple[str, dict]:
    cards = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert cards.status_code == 200, f"GET /v1/models: {cards.status_code} {cards.text[:300]}"
    card = cards.json()["data"][0]
    return card["id"], card.get("capabilities") or {}


class Suite:
    def __init__(self, url: str, key: str, steps: int) -> None:
        self.url = url.rstrip("/")
        self.base = self.url + "/v1"
        self.key = key
        self.steps = steps
        self.model, self.caps = served(self.url, key)
        self.tasks = self.caps.get("tasks", [])
        multiple = self.caps.get("size_multiple") or 16
        self.side = multiple * max(1, 64 // multiple)
        self.size = f"{self.side}x{self.side}"

    def webui(self, **config) -> OpenWebUI:
        return OpenWebUI(self.base, self.key, **config)

    # -- generations -----------------------------------------------------------------------------------------------

    def generation_defaults(self) -> str:
        """A fresh install with only IMAGES_OPENAI_PARAMS set: model dall-e-2, 512x512, response_format b64_json."""
        ui = self.webui(IMAGES_OPENAI_API_PARAMS={"num_inference_steps": self.steps})
        sent, response = ui.generate("a lighthouse at dusk")
        assert sent == {"model": "dall-e-2", "prompt": "a lighthouse at dusk", "n": 1, "size": "512x512",
                        "response_format": "b64_json", "num_inference_steps": self.steps}, sent
        [image] = ui.read(response)
        assert image.size == (512, 512), image.size
        assert "b64_json" in response.json()["data"][0], "response_format b64_json was asked"
        return "dall-e-2 512x512 b64_json + IMAGES_OPENAI_PARAMS num_inference_steps"

    def generation_params_used(self) -> str:
        """The served model's name configured, and several diffusion extras merged in: all applied."""
        params = {"num_inference_steps": self.steps, "seed": 42}
        params.update({k: v for k, v in {"negative_prompt": "blurry", "guidance_scale": 3.0}.items()
                       if k in (self.caps.get("parameters") or [])})  # what the served pipeline takes
        ui = self.webui(IMAGE_GENERATION_MODEL=self.model, IMAGE_SIZE=self.size, IMAGES_OPENAI_API_PARAMS=params)
        first = response_bytes(ui.generate("a red kite")[1])
        again = response_bytes(ui.generate("a red kite")[1])
        assert first == again, "seed 42 from IMAGES_OPENAI_PARAMS twice gave different images: seed not applied"
        other = self.webui(IMAGE_GENERATION_MODEL=self.model, IMAGE_SIZE=self.size,
                           IMAGES_OPENAI_API_PARAMS={**params, "seed": 43})
        assert response_bytes(other.generate("a red kite")[1]) != first, "another seed gave the same image"
        return f"model {self.model}, {'/'.join(params)} from IMAGES_OPENAI_PARAMS"

    def generation_gpt_image(self) -> str:
        """A gpt-image model configured: no response_format sent, so the server's default (b64_json) comes back."""
        for name in ("gpt-image-1", "gpt-image-1.5"):
            ui = self.webui(IMAGE_GENERATION_MODEL=name, IMAGE_SIZE=self.size,
                            IMAGES_OPENAI_API_PARAMS={"num_inference_steps": self.steps})
            sent, response = ui.generate("a cat")
            assert "response_format" not in sent, sent
            [image] = ui.read(response)
            assert "b64_json" in response.json()["data"][0], f"{name}: b64_json expected: {response.text[:200]}"
            assert image.size == (self.side, self.side), image.size
        return "gpt-image-1, gpt-image-1.5 without response_format -> b64_json"

    def generation_url(self) -> str:
        """An admin who widened IMAGE_URL_RESPONSE_MODELS_REGEX_PATTERN to dall-e: no response_format, a URL back,
        fetched with the Authorization header (same origin)."""
        ui = self.webui(IMAGE_GENERATION_MODEL="dall-e-3", IMAGE_SIZE=self.size,
                        IMAGE_URL_RESPONSE_MODELS_REGEX_PATTERN="^(gpt-image|dall-e)",
                        IMAGES_OPENAI_API_PARAMS={"num_inference_steps": self.steps})
        sent, response = ui.generate("a cat")
        assert "response_format" not in sent, sent
        assert response.is_success and response.json()["data"][0].get("url"), \
            f"dall-e-3 without response_format: a url expected: {response.status_code} {response.text[:300]}"
        [image] = ui.read(response)
        assert image.format == "PNG" and image.size == (self.side, self.side), (image.format, image.size)
        return "dall-e-3 without response_format -> url, fetched"

    def generation_unknown_param(self) -> str:
        """A misspelt IMAGES_OPENAI_PARAMS key: a 400 naming it (Open WebUI shows the failure)."""
        ui = self.webui(IMAGE_SIZE=self.size, IMAGES_OPENAI_API_PARAMS={"num_inference_step": self.steps})
        _, response = ui.generate("a cat")
        assert response.status_code == 400, f"{response.status_code}: {response.text[:300]}"
        error = response.json()["error"]
        assert error["param"] == "num_inference_step" and error["message"], error
        return "num_inference_step -> 400 param num_inference_step"

    # -- edits -----------------------------------------------------------------------------------------------------

    def edit_one(self) -> str:
        """One image (field `image`), no size configured: the server picks it from the input."""
        ui = self.webui(IMAGE_EDIT_MODEL=self.model)
        sent, response = ui.edit("make it blue", data_url(96, 64, (220, 40, 40)))
        assert "size" not in sent and sent["response_format"] == "b64_json", sent
        [image] = ui.read(response)
        return f"image x1, model {self.model}, no size -> {image.size[0]}x{image.size[1]}"

    def edit_several(self) -> str:
        """Several images (repeated `image[]`), IMAGE_EDIT_SIZE and n set, a gpt-image model: no response_format."""
        ui = self.webui(IMAGE_EDIT_MODEL="gpt-image-1", IMAGE_EDIT_SIZE=self.size)
        count = min(self.caps.get("max_input_images") or 2, 3)
        colours = [(220, 40, 40), (40, 40, 220), (40, 200, 40)]
        sent, response = ui.edit("combine them", [data_url(64, 64, colours[i]) for i in range(count)], n=1)
        assert "response_format" not in sent and sent["size"] == self.size, sent
        images = ui.read(response)
        assert len(images) == 1 and images[0].size == (self.side, self.side), [i.size for i in images]
        return f"image[] x{count}, gpt-image-1, size {self.size} -> b64_json"

    def edit_jpeg(self) -> str:
        """A JPEG upload (Open WebUI's `.jpg` name and image/jpeg type), dall-e-2 as the edit model."""
        ui = self.webui(IMAGE_EDIT_MODEL="dall-e-2", IMAGE_EDIT_SIZE=self.size)
        sent, response = ui.edit("add snow", data_url(64, 64, (90, 90, 90), fmt="JPEG"))
        [image] = ui.read(response)
        assert image.size == (self.side, self.side), image.size
        return "image/jpeg under image, dall-e-2, response_format b64_json"

    def edit_default_model(self) -> str:
        """A fresh install that never chose an edit model sends `model` as an empty string."""
        ui = self.webui(IMAGE_EDIT_SIZE=self.size)
        sent, response = ui.edit("make it blue", data_url(64, 64, (220, 40, 40)))
        assert sent["model"] == "", sent
        [image] = ui.read(response)
        return "model '' (IMAGE_EDIT_MODEL unset) accepted"

    def edit_refused(self) -> str:
        ui = self.webui(IMAGE_EDIT_MODEL=self.model, IMAGE_EDIT_SIZE=self.size)
        _, response = ui.edit("make it blue", data_url(64, 64, (220, 40, 40)))
        assert response.status_code == 400 and response.json()["error"]["param"] == "image", \
            f"{response.status_code}: {response.text[:300]}"
        return "a model that cannot edit: 400 param image"

    def generation_refused(self) -> str:
        ui = self.webui(IMAGE_SIZE=self.size)
        _, response = ui.generate("a cat")
        assert response.status_code == 400, f"{response.status_code}: {response.text[:300]}"
        return "a model without text-to-image: generation is a 400"


def response_bytes(response: httpx.Response) -> str:
    assert response.is_success, f"HTTP {response.status_code}: {response.text[:400]}"
    return response.json()["data"][0]["b64_json"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--only", default="", help="run only the checks whose name contains one of these "
                                                    "comma-separated words")
    args = parser.parse_args()
    suite = Suite(args.url, args.api_key, args.steps)
    print(f"Open WebUI 0.12 openai engine against {suite.model}: tasks {suite.tasks}")
    checks = []
    if "text-to-image" in suite.tasks:
        checks += [suite.generation_defaults, suite.generation_params_used, suite.generation_gpt_image,
                   suite.generation_url, suite.generation_unknown_param]
    else:
        checks += [suite.generation_refused]
    if "image-edit" in suite.tasks:
        checks += [suite.edit_one]
        if (suite.caps.get("max_input_images") or 1) >= 2:
            checks += [suite.edit_several]
        checks += [suite.edit_jpeg, suite.edit_default_model]
    else:
        checks += [suite.edit_refused]
    if args.only:
        checks = [c for c in checks if any(word in c.__name__ for word in args.only.split(","))]
    for check in checks:
        try:
            detail = check()
        except Exception as exc:  # noqa: BLE001 - report the first failure clearly, then stop
            print(f"FAIL {check.__name__}: {type(exc).__name__}: {exc}")
            return 1
        print(f"ok   {check.__name__}: {detail}")
    print(f"open webui: all {len(checks)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
