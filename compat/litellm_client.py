"""Drive a running openai-dit server through LiteLLM, configured as a LiteLLM user would for an OpenAI-compatible
server: `model="openai/<name>"`, `api_base="<url>/v1"`, an `api_key`.

    python compat/litellm_client.py --url http://127.0.0.1:8000 [--api-key K] [--steps 2]

What LiteLLM sends (litellm >= 1.79): `image_generation` goes through the openai SDK as JSON and refuses
`response_format` for every `openai/` model before sending anything, so the server's default decides between `url`
and `b64_json`; unknown keyword arguments (`num_inference_steps`, `seed`) become top-level JSON fields.
`image_edit` is LiteLLM's own multipart request with the files always under `image[]`, one or several.
`video_generation` posts a multipart (1.79: JSON without a file) job, extra keyword arguments as form fields, then
`video_status` and `video_content` call `/v1/videos/{id}` and `/content` with the server's id decoded from LiteLLM's.
The checks follow the served model's tasks (`GET /v1/models`). One line per check; exits non-zero on the first
failure.
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import io
import json
import os
import sys
import time
import warnings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the cost map at import

import httpx  # noqa: E402
import litellm  # noqa: E402
from PIL import Image  # noqa: E402
from sdk_checks import png  # noqa: E402

litellm.suppress_debug_info = True
litellm.telemetry = False


def error_param(exc: Exception) -> str | None:
    """The `param` of the server's error object: in the response LiteLLM kept, or quoted in its message."""
    try:
        return exc.response.json()["error"]["param"]
    except Exception:  # noqa: BLE001 - LiteLLM's SDK-based calls keep no body
        pass
    message = str(exc)
    try:
        return json.loads(message[message.index("{"):])["error"]["param"]
    except Exception:  # noqa: BLE001
        return None


class Suite:
    def __init__(self, url: str, api_key: str, steps: int) -> None:
        self.url = url.rstrip("/")
        self.api_base = self.url + "/v1"
        self.api_key = api_key
        self.steps = steps
        cards = httpx.get(f"{self.api_base}/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        assert cards.status_code == 200, f"GET /v1/models: {cards.status_code} {cards.text[:300]}"
        self.cards = cards.json()["data"]
        self.model = self.cards[0]["id"]  # the served name comes first, OpenAI's aliases after it
        self.caps = self.cards[0].get("capabilities") or {}
        self.tasks = self.caps.get("tasks", [])
        multiple = self.caps.get("size_multiple") or 16
        self.side = multiple * max(1, 64 // multiple)
        self.size = f"{self.side}x{self.side}"

    def optional(self, **fields) -> dict:
        """The extension fields among `fields` that the served pipeline takes (`capabilities.parameters`)."""
        return {k: v for k, v in fields.items() if k in (self.caps.get("parameters") or [])}

    def auth(self) -> dict:
        return {"api_base": self.api_base, "api_key": self.api_key}

    # -- helpers ---------------------------------------------------------------------------------------------------

    def image_of(self, item) -> Image.Image:
        """A LiteLLM ImageObject read as LiteLLM users do: `b64_json`, else download `url`."""
        if item.b64_json:
            return Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert item.url, f"neither b64_json nor url in {item}"
        return self.download(item.url)

    @staticmethod
    def download(url: str) -> Image.Image:
        assert url.startswith(("http://", "https://")), f"not an absolute http URL: {url!r}"
        got = httpx.get(url, timeout=60)
        assert got.status_code == 200 and got.headers.get("content-type", "").startswith("image/"), \
            f"GET {url}: {got.status_code} {got.headers.get('content-type')} {got.text[:200]}"
        return Image.open(io.BytesIO(got.content))

    def expect_bad_request(self, name: str, call) -> str:
        """`call()` must raise LiteLLM's BadRequestError (a 400 from the server) whose message names `name`."""
        try:
            call()
        except litellm.BadRequestError as exc:
            param = error_param(exc)
            if param is not None:
                assert param == name, f"the 400 names param {param!r}, not {name!r}: {exc}"
            else:
                assert name in str(exc), f"the 400 does not name {name!r}: {exc}"
            return str(exc)
        except litellm.APIError as exc:  # another status: say which
            raise AssertionError(f"expected a 400 naming {name!r}, got {type(exc).__name__}: {exc}") from None
        raise AssertionError(f"expected a 400 naming {name!r}, the call succeeded")

    # -- images ----------------------------------------------------------------------------------------------------

    def generation_default_b64(self) -> str:
        result = litellm.image_generation(model=f"openai/{self.model}", prompt="a lighthouse at dusk", size=self.size,
                                          num_inference_steps=self.steps, seed=7, **self.auth())
        item = result.data[0]
        assert item.b64_json, f"no response_format and a non-dall-e model: b64_json expected, got {item}"
        image = self.image_of(item)
        assert image.format == "PNG" and image.size == (self.side, self.side), (image.format, image.size)
        self.first = item.b64_json
        return f"openai/{self.model} -> b64_json PNG {image.size}"

    def generation_extras_used(self) -> str:
        """The extra keyword arguments reach the pipeline: the same seed repeats, another step count differs."""
        again = litellm.image_generation(model=f"openai/{self.model}", prompt="a lighthouse at dusk", size=self.size,
                                         num_inference_steps=self.steps, seed=7, **self.auth())
        assert again.data[0].b64_json == self.first, "seed=7 twice gave different images: seed is not applied"
        other = litellm.image_generation(model=f"openai/{self.model}", prompt="a lighthouse at dusk", size=self.size,
                                         num_inference_steps=self.steps + 1, seed=7, **self.auth())
        assert other.data[0].b64_json != self.first, "another num_inference_steps gave the same image: not applied"
        return "seed and num_inference_steps as top-level fields"

    def generation_extra_body(self) -> str:
        extra = {"num_inference_steps": self.steps, "seed": 11, **self.optional(negative_prompt="blurry",
                                                                                guidance_scale=3.0)}
        result = litellm.image_generation(model=f"openai/{self.model}", prompt="a red kite", size=self.size, n=2,
                                          quality="low", extra_body=extra, **self.auth())
        assert len(result.data) == 2, f"n=2 gave {len(result.data)} images"
        sizes = {self.image_of(item).size for item in result.data}
        assert sizes == {(self.side, self.side)}, sizes
        return f"n=2, quality=low, extra_body {'/'.join(extra)}"

    def generation_width_height(self) -> str:
        """SGLang-style width/height as extra fields instead of size."""
        width = self.side + (self.caps.get("size_multiple") or 16) * 2
        result = litellm.image_generation(model=f"openai/{self.model}", prompt="a wide view", width=width,
                                          height=self.side, num_inference_steps=self.steps, **self.auth())
        image = self.image_of(result.data[0])
        assert image.size == (width, self.side), f"width={width} height={self.side} asked, made {image.size}"
        return f"width/height {width}x{self.side} without size"

    def generation_openai_names(self) -> str:
        gpt = litellm.image_generation(model="openai/gpt-image-1", prompt="a cat", size=self.size,
                                       num_inference_steps=self.steps, **self.auth())
        assert gpt.data[0].b64_json, f"gpt-image-1 without response_format: b64_json expected, got {gpt.data[0]}"
        dalle = litellm.image_generation(model="openai/dall-e-3", prompt="a cat", size=self.size,
                                         num_inference_steps=self.steps, **self.auth())
        url = dalle.data[0].url
        assert url and not dalle.data[0].b64_json, \
            f"dall-e-3 without response_format: a url expected, got {dalle.data[0]}"
        image = self.download(url)
        assert image.format == "PNG" and image.size == (self.side, self.side), (image.format, image.size)
        return "gpt-image-1 -> b64_json, dall-e-3 -> url (downloaded)"

    def generation_unknown_field(self) -> str:
        self.expect_bad_request("num_inference_stepz", lambda: litellm.image_generation(
            model=f"openai/{self.model}", prompt="x", size=self.size, num_inference_stepz=2, **self.auth()))
        return "a misspelt extra field is a 400 naming it"

    def edit_one(self) -> str:
        result = litellm.image_edit(model=f"openai/{self.model}", image=png(96, 64, (220, 40, 40)),
                                    prompt="make it blue", num_inference_steps=self.steps, seed=3, **self.auth())
        image = self.image_of(result.data[0])
        assert image.size[0] > 0 and image.size[1] > 0, image.size
        return f"one file as image[] -> {image.size[0]}x{image.size[1]}"

    def edit_two(self) -> str:
        result = litellm.image_edit(model=f"openai/{self.model}",
                                    image=[png(64, 64, (220, 40, 40)), png(64, 64, (40, 40, 220))],
                                    prompt="put the red square on the blue one", n=1, size=self.size,
                                    response_format="b64_json", num_inference_steps=self.steps,
                                    extra_body={"seed": 5}, **self.auth())
        item = result.data[0]
        assert item.b64_json, f"response_format=b64_json: {item}"
        image = self.image_of(item)
        assert image.size == (self.side, self.side), image.size
        return f"two files as image[] x2, size {self.size}, response_format=b64_json"

    def edit_openai_name(self) -> str:
        result = litellm.image_edit(model="openai/gpt-image-1", image=png(64, 64, (20, 160, 60)), prompt="snow",
                                    size=self.size, num_inference_steps=self.steps, **self.auth())
        assert result.data[0].b64_json, f"gpt-image-1 edit without response_format: b64_json expected: {result.data[0]}"
        return "gpt-image-1 -> b64_json"

    def edit_refused(self) -> str:
        self.expect_bad_request("image", lambda: litellm.image_edit(
            model=f"openai/{self.model}", image=png(64, 64, (1, 2, 3)), prompt="x", **self.auth()))
        return "a model that cannot edit answers 400 naming image"

    # -- videos ----------------------------------------------------------------------------------------------------

    def wait(self, video, timeout: float = 300):
        deadline = time.monotonic() + timeout
        seen = [video.status]
        while video.status in ("queued", "in_progress"):
            assert time.monotonic() < deadline, f"video {video.id} still {video.status} after {timeout}s"
            time.sleep(0.2)
            video = litellm.video_status(video_id=video.id, **self.auth())
            if video.status != seen[-1]:
                seen.append(video.status)
        assert video.status == "completed", f"video ended {video.status}: {getattr(video, 'error', None)}"
        return video, seen

    def video_args(self) -> dict:
        if "text-to-video" not in self.tasks:  # an image-to-video-only model needs its reference image
            return {"input_reference": png(self.side, self.side, (30, 120, 220))}
        return {}

    def video_round_trip(self) -> str:
        frames = self.caps.get("default_num_frames") or 9
        video = litellm.video_generation(model=f"openai/{self.model}", prompt="waves on a beach", size=self.size,
                                         num_frames=frames, num_inference_steps=self.steps, seed=4,
                                         extra_body={"fps": 8}, **self.video_args(), **self.auth())
        assert video.id and video.object == "video" and video.status in ("queued", "in_progress", "completed"), video
        done, seen = self.wait(video)
        mp4 = litellm.video_content(video_id=done.id, **self.auth())
        assert isinstance(mp4, bytes) and mp4[4:8] == b"ftyp", f"not an MP4: {mp4[:16]!r}"
        import av

        with av.open(io.BytesIO(mp4)) as container:
            rate = container.streams.video[0].average_rate
            decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(decoded) == frames, f"num_frames={frames} asked, {len(decoded)} frames made: not applied"
        assert decoded[0].shape[:2] == (self.side, self.side), decoded[0].shape
        assert abs(float(rate) - 8) < 0.01, f"fps=8 asked (extra_body), the MP4 runs at {rate}"
        return f"{' -> '.join(seen)}; MP4 of {len(decoded)} frames at {rate} fps (num_frames, fps as extra fields)"

    def video_alias_and_thumbnail(self) -> str:
        video = litellm.video_generation(model="openai/sora-2", prompt="a dog", seconds="1", size=self.size,
                                         extra_body={"num_inference_steps": self.steps}, **self.video_args(),
                                         **self.auth())
        done, _ = self.wait(video)
        assert done.seconds == "1", f"seconds must come back as the string '1': {done.seconds!r}"
        thumbnail = litellm.video_content(video_id=done.id, variant="thumbnail", **self.auth())
        assert thumbnail[:4] == b"RIFF" and thumbnail[8:12] == b"WEBP", f"thumbnail not WebP: {thumbnail[:16]!r}"
        return "model sora-2, seconds='1', thumbnail WebP"

    def video_json_body(self) -> str:
        """LiteLLM 1.79 posts a job without a file as JSON (later versions always send multipart): replayed here,
        then polled and downloaded through LiteLLM with the server's own (not LiteLLM-encoded) id."""
        if "text-to-video" not in self.tasks:
            return "skipped: an image-to-video model needs a file, which 1.79 sends as multipart"
        body = {"model": self.model, "prompt": "a red kite", "size": self.size, "num_frames": 5,
                "num_inference_steps": self.steps}
        created = httpx.post(f"{self.api_base}/videos", json=body, timeout=60,
                             headers={"Authorization": f"Bearer {self.api_key}"})
        assert created.status_code == 200 and created.json().get("object") == "video", \
            f"JSON job: {created.status_code} {created.text[:300]}"
        video = litellm.video_status(video_id=created.json()["id"], **self.auth())
        done, _ = self.wait(video)
        mp4 = litellm.video_content(video_id=done.id, **self.auth())
        assert mp4[4:8] == b"ftyp", f"not an MP4: {mp4[:16]!r}"
        return "JSON body (LiteLLM 1.79's shape) -> completed MP4"

    def auth_refused(self) -> str:
        """A wrong key: the server's 401 becomes LiteLLM's AuthenticationError."""
        try:
            litellm.video_status(video_id="video_" + "0" * 32, api_base=self.api_base, api_key="wrong-key")
        except litellm.AuthenticationError as exc:
            return f"401 -> AuthenticationError ({str(exc)[:60]}...)"
        raise AssertionError("a wrong API key was accepted")

    def video_unknown_field(self) -> str:
        self.expect_bad_request("num_framez", lambda: litellm.video_generation(
            model=f"openai/{self.model}", prompt="x", size=self.size, num_framez=9, **self.video_args(),
            **self.auth()))
        return "a misspelt extra form field is a 400 naming it"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--only", default="", help="run only the checks whose name contains one of these "
                                                    "comma-separated words")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    suite = Suite(args.url, args.api_key, args.steps)
    print(f"litellm {importlib.metadata.version('litellm')} against {suite.model}: tasks {suite.tasks}")
    checks = []
    if "text-to-image" in suite.tasks:
        checks += [suite.generation_default_b64, suite.generation_extras_used, suite.generation_extra_body,
                   suite.generation_width_height, suite.generation_openai_names, suite.generation_unknown_field]
    if "image-edit" in suite.tasks:
        checks += [suite.edit_one]
        if (suite.caps.get("max_input_images") or 1) >= 2:
            checks += [suite.edit_two]
        checks += [suite.edit_openai_name]
    elif "text-to-image" in suite.tasks:
        checks += [suite.edit_refused]
    if {"text-to-video", "image-to-video"} & set(suite.tasks):
        checks += [suite.video_round_trip, suite.video_alias_and_thumbnail, suite.video_json_body,
                   suite.video_unknown_field]
    if httpx.get(f"{suite.api_base}/models", timeout=30).status_code == 401:  # the server requires a key
        checks += [suite.auth_refused]
    if args.only:
        checks = [c for c in checks if any(word in c.__name__ for word in args.only.split(","))]
    for check in checks:
        try:
            detail = check()
        except Exception as exc:  # noqa: BLE001 - report the first failure clearly, then stop
            print(f"FAIL {check.__name__}: {type(exc).__name__}: {exc}")
            return 1
        print(f"ok   {check.__name__}: {detail}")
    print(f"litellm: all {len(checks)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
