"""Drive a running openai-dit server with the official `openai` SDK through every Images and Models call.

    python compat/openai_images.py --url http://127.0.0.1:8000 [--steps 2]

Only `base_url` changes from a stock OpenAI client. What the model can do (edits, partial images, how many
input images) is read from `GET /v1/models`; calls the model cannot serve must fail with the SDK's
BadRequestError. Exits non-zero on the first mismatch.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import warnings

import httpx
import openai
from PIL import Image
from sdk_checks import expect_error, png


def decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def check_models(client: openai.OpenAI) -> dict:
    models = client.models.list().data
    ids = [m.id for m in models]
    # The served name first, then OpenAI's image model names (accepted as aliases unless turned off).
    assert set(ids[1:]) <= {"dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"}, ids
    model = client.models.retrieve(models[0].id)
    assert model.id == models[0].id and model.object == "model"
    expect_error(openai.NotFoundError, "model", lambda: client.models.retrieve("no-such-model"))
    print(f"models: {model.id}")
    return {"id": model.id, **(model.model_extra or {}).get("capabilities", {})}


def check_generations(client: openai.OpenAI, model: dict, steps: int) -> None:
    extra = {"num_inference_steps": steps, "seed": 7}
    side = model["size_multiple"] * max(1, 64 // model["size_multiple"])
    size = f"{side}x{side}"
    result = client.images.generate(model=model["id"], prompt="a lighthouse at dusk", n=2, size=size,
                                    quality="low", extra_body=extra)
    assert len(result.data) == 2 and result.size == size and result.output_format == "png", result
    assert decoded(result.data[0].b64_json).size == (side, side)
    assert result.usage.output_tokens > 0 and result.usage.total_tokens >= result.usage.output_tokens
    first = client.images.generate(prompt="a lighthouse at dusk", size=size, extra_body=extra)
    again = client.images.generate(prompt="a lighthouse at dusk", size=size, extra_body=extra)
    assert again.data[0].b64_json == first.data[0].b64_json, "the same seed must give the same image"

    jpeg = client.images.generate(prompt="a lighthouse", size=size, output_format="jpeg", output_compression=50,
                                  extra_body=extra)
    assert decoded(jpeg.data[0].b64_json).format == "JPEG"
    linked = client.images.generate(prompt="a lighthouse", size=size, response_format="url", extra_body=extra)
    download = httpx.get(linked.data[0].url, timeout=30)
    assert download.status_code == 200 and download.headers["content-type"] == "image/png", download
    auto = client.images.generate(prompt="a lighthouse", size="auto", extra_body=extra)
    assert auto.size == "{}x{}".format(*model["default_size"]), auto.size

    expect_error(openai.BadRequestError, "size", lambda: client.images.generate(prompt="x", size=f"{side + 1}x{side}"))
    expect_error(openai.BadRequestError, "n", lambda: client.images.generate(prompt="x", n=11))
    expect_error(openai.BadRequestError, "background",
                 lambda: client.images.generate(prompt="x", background="transparent"))
    expect_error(openai.NotFoundError, "model", lambda: client.images.generate(prompt="x", model="gpt-4o"))
    dalle = client.images.generate(prompt="a lighthouse", size=size, model="dall-e-3", extra_body=extra)
    assert dalle.data[0].url and not dalle.data[0].b64_json, "dall-e-3 answers with links by default, as OpenAI"
    print("generations: ok")


def check_stream(events, prefix: str, partials_expected: bool) -> None:
    kinds = [event.type for event in events]
    assert kinds[-1] == f"{prefix}.completed", kinds
    partials = [k for k in kinds if k == f"{prefix}.partial_image"]
    assert (len(partials) > 0) == partials_expected, kinds
    print(f"stream {prefix}: {kinds}")


def check_streaming(client: openai.OpenAI, model: dict, steps: int) -> None:
    side = model["size_multiple"] * max(1, 64 // model["size_multiple"])
    partial = 2 if model.get("partial_images") else 0
    events = list(client.images.generate(prompt="a red kite", size=f"{side}x{side}", stream=True,
                                         partial_images=partial, extra_body={"num_inference_steps": max(steps, 4)}))
    check_stream(events, "image_generation", partial > 0)
    completed = events[-1]
    assert decoded(completed.b64_json).size == (side, side) and completed.usage.total_tokens > 0


def check_edits(client: openai.OpenAI, model: dict, steps: int) -> None:
    extra = {"num_inference_steps": steps, "seed": 3}
    red, blue = png(96, 64, (220, 40, 40)), png(64, 64, (40, 40, 220))
    if "image-edit" not in model["tasks"]:
        expect_error(openai.BadRequestError, "image",
                     lambda: client.images.edit(image=("red.png", red, "image/png"), prompt="blue"))
        expect_error(openai.BadRequestError, "image",
                     lambda: client.images.create_variation(image=("red.png", red, "image/png")))
        print("edits: refused as expected")
        return
    one = client.images.edit(image=("red.png", red, "image/png"), prompt="make it blue", extra_body=extra)
    assert one.size == "{}x{}".format(*decoded(one.data[0].b64_json).size)
    if model["max_input_images"] >= 2:
        two = client.images.edit(image=[("red.png", red, "image/png"), ("blue.png", blue, "image/png")],
                                 prompt="combine them", n=2, size="64x64", extra_body=extra)
        assert len(two.data) == 2 and decoded(two.data[1].b64_json).size == (64, 64)
        assert two.usage.input_tokens_details.image_tokens > one.usage.input_tokens_details.image_tokens
    too_many = [(f"{i}.png", red, "image/png") for i in range(model["max_input_images"] + 1)]
    expect_error(openai.BadRequestError, "image", lambda: client.images.edit(image=too_many, prompt="x"))
    expect_error(openai.BadRequestError, "image",
                 lambda: client.images.edit(image=("bad.png", b"not an image", "image/png"), prompt="x"))
    events = list(client.images.edit(image=[("red.png", red, "image/png")], prompt="make it blue", stream=True,
                                     partial_images=1, extra_body={**extra, "num_inference_steps": max(steps, 4)}))
    check_stream(events, "image_edit", bool(model.get("partial_images")))
    variation = client.images.create_variation(image=("red.png", red, "image/png"), n=1, extra_body=extra)
    assert len(variation.data) == 1
    print("edits and variations: ok")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the SDK marks variations as deprecated
    client = openai.OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key="unused", max_retries=0, timeout=600)
    model = check_models(client)
    if "text-to-image" in model["tasks"]:
        check_generations(client, model, args.steps)
        check_streaming(client, model, args.steps)
    else:
        expect_error(openai.BadRequestError, None, lambda: client.images.generate(prompt="x"))
        print("generations: refused as expected (an edit-only model)")
    check_edits(client, model, args.steps)
    print("all OpenAI SDK checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
