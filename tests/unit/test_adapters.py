"""The adapters, table-driven, one level below the routes: request Structs in, GenerationRequests (or the exact
APIError: class, param, code) out. No app, no server, no model."""

from __future__ import annotations

import dataclasses
from functools import partial
from types import SimpleNamespace

import pytest
from fakes import IMAGES, INPAINT, TEXT_ONLY, TEXT_TO_IMAGE, VIDEO

from openai_dit.adapters import checks, forms, images, native, videos
from openai_dit.errors import APIError, InvalidRequest, NotFound, UnsupportedTask
from openai_dit.jobs.records import VideoSettings
from openai_dit.protocol.images import CacheOverrides, ImageEditRequest, ImageGenerationRequest, ImageVariationRequest
from openai_dit.protocol.models import ModelNames
from openai_dit.protocol.native import GenerateRequest
from openai_dit.protocol.videos import VideoCreateRequest
from openai_dit.types import CacheStats, GenerationResult, Task

T2I, EDIT, T2V, I2V = Task.TEXT_TO_IMAGE, Task.IMAGE_EDIT, Task.TEXT_TO_VIDEO, Task.IMAGE_TO_VIDEO
NAMES, BARE = ModelNames(("fake-model", "fake-alias")), ModelNames(("fake-model",), aliases=False)
FILL = dataclasses.replace(INPAINT, mask_required=True)  # inpainting only (FLUX.1 Fill)
M48 = dataclasses.replace(TEXT_ONLY, size_multiple=48)
BUCKETS = dataclasses.replace(IMAGES, sizes=((1024, 1024), (1280, 720), (720, 1280)))
MIN4 = dataclasses.replace(IMAGES, min_steps=4)
MOCHI, LTX = dataclasses.replace(VIDEO, frame_multiple=6), dataclasses.replace(VIDEO, frame_multiple=8, default_fps=24)
GUIDED = dataclasses.replace(VIDEO, call_parameters=VIDEO.call_parameters | {"guidance_scale"}, default_guidance=5.0)
BUDGET = 64 * 64 * 9 * 2  # two 9-frame 64x64 videos' worth
V_BUDGET = dataclasses.replace(VIDEO, max_job_pixels=BUDGET)
I_BUDGET = dataclasses.replace(IMAGES, max_job_pixels=128 * 128 * 2)
BAD_SIZE = (InvalidRequest, "size", "invalid_size")
BAD_SECONDS = (InvalidRequest, "seconds", "invalid_seconds")
UNSUPPORTED, TOO_LARGE = "unsupported_parameter", "job_too_large"
gen, img = partial(GenerateRequest, prompt="x"), partial(ImageGenerationRequest, prompt="x")
edit, vid = partial(ImageEditRequest, prompt="x"), partial(VideoCreateRequest, prompt="x")


def outcome(call):
    """What a call comes to: its value, or (exact exception class, param, code) of the APIError it raises."""
    try:
        return call()
    except APIError as exc:
        return type(exc), exc.param, exc.code


def picked(obj, expected: dict) -> dict:
    return {name: getattr(obj, name) for name in expected}


# --- checks ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("caps", "size", "expected"), [
    (IMAGES, "auto", None), (IMAGES, "4096x64", (4096, 64)), (BUCKETS, "1280x720", (1280, 720)),
])
def test_parse_size_accepts(caps, size, expected):
    assert checks.parse_size(size, caps) == expected


@pytest.mark.parametrize(("caps", "size", "hint"), [
    (IMAGES, "big", "got 'big'"), (IMAGES, "64x64\n", "WxH"), (IMAGES, "123456x64", "WxH"),
    (IMAGES, "100x100", "nearest: 96x96"), (M48, "64x64", "multiples of 48"),
    (BUCKETS, "1000x1000", "nearest: 1024x1024"),
])
def test_parse_size_refuses(caps, size, hint):
    with pytest.raises(InvalidRequest) as info:
        checks.parse_size(size, caps)
    assert (type(info.value), info.value.param, info.value.code) == BAD_SIZE and hint in info.value.message


def test_parse_size_refuses_non_ascii_digits():
    assert outcome(lambda: checks.parse_size("\u0666\u0664x\u0666\u0664", IMAGES)) == BAD_SIZE


@pytest.mark.parametrize(("size", "width", "height", "expected"), [
    (None, None, None, None), (None, 128, 64, (128, 64)), ("auto", 128, 64, (128, 64)),
    (None, 128, None, (InvalidRequest, "height", None)), (None, None, 64, (InvalidRequest, "width", None)),
    (None, 100, 64, (InvalidRequest, "width", "invalid_size")),
    (None, 64, 100, (InvalidRequest, "width", "invalid_size")),
    ("64x64", 128, 64, (InvalidRequest, "size", None)),  # both given, disagreeing
])
def test_requested_size(size, width, height, expected):
    assert outcome(lambda: checks.requested_size(size, width, height, IMAGES)) == expected


@pytest.mark.parametrize(("names", "requested", "route", "accepted"), [
    (NAMES, None, "images", True), (NAMES, "dall-e-3", "images", True), (NAMES, "sora-2", "videos", True),
    (NAMES, "sora-2", "images", False), (NAMES, "dall-e-3", "videos", False), (BARE, "dall-e-3", "images", False),
])
def test_check_model(names, requested, route, accepted):
    expected = None if accepted else (NotFound, "model", "model_not_found")
    assert outcome(lambda: checks.check_model(requested, names, route)) == expected


@pytest.mark.parametrize(("task", "caps", "param", "expected"), [
    (T2I, IMAGES, None, None), (EDIT, TEXT_ONLY, "image", (UnsupportedTask, "image", "unsupported_task")),
    (T2I, VIDEO, None, (UnsupportedTask, None, "unsupported_task")),
])
def test_check_task(task, caps, param, expected):
    assert outcome(lambda: checks.check_task(task, caps, "m", param=param)) == expected


@pytest.mark.parametrize(("frames", "caps", "param", "expected"), [
    (1, VIDEO, "num_frames", None), (10, TEXT_ONLY, "num_frames", None),  # no frame rule: any count
    (10, VIDEO, "num_frames", (InvalidRequest, "num_frames", "invalid_num_frames")),
    (8, MOCHI, "seconds", (InvalidRequest, "seconds", "invalid_num_frames")),
])
def test_check_frames(frames, caps, param, expected):
    assert outcome(lambda: checks.check_frames(frames, caps, param=param)) == expected


def test_check_frames_names_the_valid_counts_around():
    with pytest.raises(InvalidRequest, match=r"4k\+1 .*e\.g\. 9 or 13\); got 10"):
        checks.check_frames(10, VIDEO)


@pytest.mark.parametrize(("steps", "expected"), [
    (None, None), (4, None), (3, (InvalidRequest, "num_inference_steps", "invalid_value")),
])
def test_check_steps(steps, expected):
    assert outcome(lambda: checks.check_steps(steps, MIN4, "m")) == expected


@pytest.mark.parametrize(("given", "task", "caps", "expected"), [
    (True, EDIT, INPAINT, None), (False, T2I, FILL, None), (True, EDIT, IMAGES, (InvalidRequest, "mask", UNSUPPORTED)),
    (True, T2I, INPAINT, (InvalidRequest, "mask", None)),
    (False, EDIT, FILL, (InvalidRequest, "mask", "mask_required")),
])
def test_check_mask(given, task, caps, expected):
    assert outcome(lambda: checks.check_mask(given, task, caps, "m")) == expected


@pytest.mark.parametrize(("shape", "limit", "expected"), [
    ((4096, 4096, 1000, 4), None, None), ((64, 64, 9, 2), BUDGET, None),  # exactly the budget
    ((64, 64, 10, 2), BUDGET, (InvalidRequest, "num_frames", TOO_LARGE)),
    ((512, 512, 9, 1), BUDGET, (InvalidRequest, "size", TOO_LARGE)),  # one frame alone is over it
])
def test_check_job_size(shape, limit, expected):
    caps = dataclasses.replace(VIDEO, max_job_pixels=limit)
    assert outcome(lambda: checks.check_job_size(*shape, caps, param="num_frames")) == expected


def test_check_job_size_names_size_param_and_states_the_job():
    with pytest.raises(InvalidRequest) as info:
        checks.check_job_size(512, 512, 9, 2, V_BUDGET, param="num_frames", size_param="width")
    assert info.value.param == "width" and "512x512 x 9 frames x 2 outputs = 4,718,592" in info.value.message
    assert f"at most {BUDGET:,}" in info.value.message


@pytest.mark.parametrize(("seed", "expected"), [(7, 7), (2**63 + 5, 5)])
def test_resolve_seed_keeps_a_given_seed(seed, expected):
    assert checks.resolve_seed(seed) == expected


@pytest.mark.parametrize("seed", [None, -1])
def test_resolve_seed_draws_a_random_one(seed):
    drawn = {checks.resolve_seed(seed) for _ in range(4)}
    assert len(drawn) == 4 and all(0 <= s < 2**63 for s in drawn)


@pytest.mark.parametrize(("value", "multiple", "expected"), [(100, 16, 96), (1, 48, 96), (10000, 48, 4080)])
def test_nearest_side(value, multiple, expected):
    assert checks.nearest_side(value, multiple) == expected


@pytest.mark.parametrize(("size", "caps", "expected"), [
    ((724, 1080), TEXT_TO_IMAGE, (720, 1072)), ((15, 15), TEXT_TO_IMAGE, (16, 16)),
    ((1920, 1080), BUCKETS, (1280, 720)),
])
def test_round_down_size(size, caps, expected):
    assert checks.round_down_size(*size, caps) == expected


# --- native /generate ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "caps", "expected"), [
    (gen(), TEXT_TO_IMAGE, T2I), (gen(num_frames=9), IMAGES, T2V), (gen(image_urls=["a"], num_frames=9), IMAGES, I2V),
    (gen(), VIDEO, T2V),  # a video-only model makes video without num_frames
])
def test_native_select_task(body, caps, expected):
    assert native.select_task(body, caps) == expected


@pytest.mark.parametrize(("body", "caps", "expected"), [
    (gen(image_urls=["a"], mask="m"), FILL, EDIT), (gen(sigmas=[1.0, 0.5], num_inference_steps=2), TEXT_TO_IMAGE, T2I),
    (gen(num_frames=9), TEXT_ONLY, (UnsupportedTask, "num_frames", "unsupported_task")),
    (gen(), INPAINT, (UnsupportedTask, "image_urls", "unsupported_task")),  # it needs an input image
    (gen(image_urls=["a"] * 3), TEXT_TO_IMAGE, (InvalidRequest, "image_urls", "too_many_images")),
    (gen(image_urls=["a"] * 2), VIDEO, (InvalidRequest, "image_urls", "too_many_images")),
    (gen(image_urls=["a"], mask="m"), TEXT_TO_IMAGE, (InvalidRequest, "mask", UNSUPPORTED)),
    (gen(num_frames=10), VIDEO, (InvalidRequest, "num_frames", "invalid_num_frames")),
    (gen(num_images=2), VIDEO, (InvalidRequest, "num_images", None)),
    (gen(guidance_scale=2.0), VIDEO, (InvalidRequest, "guidance_scale", UNSUPPORTED)),
    (gen(sigmas=[1.0]), TEXT_TO_IMAGE, (InvalidRequest, "sigmas", None)),  # 50 steps by default
    (gen(num_inference_steps=2), MIN4, (InvalidRequest, "num_inference_steps", "invalid_value")),
])
def test_native_check_request(body, caps, expected):
    assert outcome(lambda: native.check_request(body, caps, "m")) == expected


@pytest.mark.parametrize(("body", "task", "caps", "inputs", "expected"), [
    (gen(width=724, height=1080), T2I, TEXT_TO_IMAGE, [], {"width": 720, "height": 1072, "guidance_scale": 7.5,
                                                          "num_inference_steps": 50, "num_frames": None, "fps": None}),
    (gen(width=100, negative_prompt=""), T2I, TEXT_TO_IMAGE, [],
     {"width": 96, "height": 1024, "negative_prompt": None}),
    (gen(), EDIT, INPAINT, [(200, 100)], {"width": 1456, "height": 720, "guidance_scale": None}),  # input's ratio
    (gen(guidance_scale=3.5, seed=42, num_images=2), T2I, TEXT_TO_IMAGE, [],
     {"guidance_scale": 3.5, "seed": 42, "num_outputs": 2}),
    (gen(), T2V, VIDEO, [], {"num_frames": 9, "fps": 8, "width": 64, "height": 64, "guidance_scale": None}),
    (gen(width=2000, height=500), T2I, BUCKETS, [], {"width": 1280, "height": 720}),
])
def test_native_to_generation_request(body, task, caps, inputs, expected):
    refs = [SimpleNamespace(size=size) for size in inputs]
    request = native.to_generation_request(body, task, caps, refs, request_id="r1")
    assert picked(request, expected) == expected
    assert (request.task, request.request_id, request.images) == (task, "r1", refs)


@pytest.mark.parametrize(("body", "task", "caps", "param"), [
    (gen(width=64, height=64, num_frames=41), T2V, V_BUDGET, "num_frames"),
    (gen(width=512, height=512, num_frames=9), T2V, V_BUDGET, "width"),
    (gen(width=128, height=128, num_images=3), T2I, I_BUDGET, "num_images"),
])
def test_native_over_the_budget(body, task, caps, param):
    assert outcome(lambda: native.to_generation_request(body, task, caps, [], request_id="r")) == (
        InvalidRequest, param, TOO_LARGE)


@pytest.mark.parametrize(("include_stats", "cache", "stats"), [
    (False, CacheStats(True), None),
    (True, CacheStats(True, 3, 10, [1, 2, 3], "opts"), {"cache_enabled": True, "cached_steps": 3, "total_steps": 10,
                                                        "cached_step_indices": [1, 2, 3], "cache_options": "opts",
                                                        "seeds": [5, 6], "inference_seconds": 1.2346}),
])
def test_native_to_response(include_stats, cache, stats):
    request = native.to_generation_request(gen(width=64, height=80, seed=5, num_images=2), T2I, TEXT_TO_IMAGE, [],
                                           request_id="r")
    result = GenerationResult(seeds=[5, 6], started_at=1700000000.5, finished_at=1700000001.73456, cache=cache)
    response = native.to_response(result, request, images=["a", "b"], video=None, include_stats=include_stats)
    assert (response.stats, response.time_cost, response.seeds, response.width, response.height) == (
        stats, 1.2346, [5, 6], 64, 80)
    assert (response.inference_start_time, response.inference_end_time, response.images) == (
        "2023-11-14T22:13:20.500Z", "2023-11-14T22:13:21.734Z", ["a", "b"])


# --- OpenAI Images ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    (None, {}), ("low=8,medium=16,high=28", {"low": 8, "medium": 16, "high": 28}),
    (" low = 3 , high=5 ,", {"low": 3, "high": 5}),
])
def test_parse_quality_steps(text, expected):
    assert images.parse_quality_steps(text) == expected


@pytest.mark.parametrize("text", ["low", "ultra=3", "low=0", "low=201", "low=\u0663"])
def test_parse_quality_steps_refuses(text):
    with pytest.raises(ValueError, match="expected low|medium|high=STEPS"):
        images.parse_quality_steps(text)


@pytest.mark.parametrize(("body", "caps", "table", "expected"), [
    (img(), IMAGES, {}, (8, "auto")), (img(quality="low"), IMAGES, {}, (2, "low")),
    (img(quality="standard"), IMAGES, {}, (4, "medium")), (img(quality="hd"), IMAGES, {}, (8, "high")),
    (img(quality="low"), TEXT_TO_IMAGE, {}, (7, "low")),  # ceil(28 / 4)
    (img(quality="low"), IMAGES, {"low": 3, "high": 5}, (3, "low")),
    (img(quality="high", num_inference_steps=1), IMAGES, {"high": 5}, (1, "high")),  # explicit steps win
    (ImageVariationRequest(), IMAGES, {}, (8, "auto")),  # no quality field
])
def test_resolve_steps(body, caps, table, expected):
    assert images.resolve_steps(body, caps, table) == expected


@pytest.mark.parametrize(("size", "expected"), [((300, 100), (304, 96)), ((10, 10), (64, 64)),
                                                ((5000, 100), (4096, 80))])
def test_size_for_input(size, expected):
    assert images.size_for_input(*size, IMAGES) == expected


@pytest.mark.parametrize(("body", "task", "caps", "options", "expected"), [
    (img(), T2I, IMAGES, {}, None), (img(width=128, height=64, model="dall-e-3"), T2I, IMAGES, {}, (128, 64)),
    (img(output_format="jpeg", output_compression=50), T2I, IMAGES, {}, None),
    (img(model="sora-2"), T2I, IMAGES, {}, (NotFound, "model", "model_not_found")),
    (img(model="dall-e-3"), T2I, IMAGES, {"names": BARE}, (NotFound, "model", "model_not_found")),
    (edit(), EDIT, TEXT_ONLY, {"param": "image"}, (UnsupportedTask, "image", "unsupported_task")),
    (edit(), EDIT, IMAGES, {"mask": True}, (InvalidRequest, "mask", UNSUPPORTED)),
    (edit(), EDIT, FILL, {}, (InvalidRequest, "mask", "mask_required")),
    (img(size="63x64"), T2I, IMAGES, {}, BAD_SIZE),
    (img(background="transparent"), T2I, IMAGES, {}, (InvalidRequest, "background", "unsupported_background")),
    (img(output_compression=99), T2I, IMAGES, {}, (InvalidRequest, "output_compression", None)),  # png
    (img(stream=True, partial_images=1), T2I, TEXT_TO_IMAGE, {}, (InvalidRequest, "partial_images", UNSUPPORTED)),
    (img(true_cfg_scale=4.0), T2I, IMAGES, {}, (InvalidRequest, "true_cfg_scale", UNSUPPORTED)),
    (img(cache=CacheOverrides(rdt=0.1)), T2I, IMAGES, {}, (InvalidRequest, "cache", None)),  # no --cache
    (img(cache=CacheOverrides()), T2I, IMAGES, {"cache_enabled": True, "cache_fixed": True},
     (InvalidRequest, "cache", None)),
])
def test_images_check_request(body, task, caps, options, expected):
    options = {"cache_enabled": False, "cache_fixed": False, **options}
    names = options.pop("names", NAMES)
    assert outcome(lambda: images.check_request(body, task, caps, names, **options)) == expected


@pytest.mark.parametrize(("body", "task", "caps", "expected"), [
    (img(n=2, seed=5), T2I, IMAGES, {"num_outputs": 2, "seed": 5, "prompt": "x", "guidance_scale": None,
                                     "partial_images": 0, "cache": None}),
    (img(stream=True, partial_images=2), T2I, IMAGES, {"partial_images": 2}),
    (img(partial_images=2), T2I, IMAGES, {"partial_images": 0}),  # previews only when streaming
    (ImageVariationRequest(), EDIT, dataclasses.replace(IMAGES, default_guidance=3.5),
     {"prompt": "", "guidance_scale": 3.5, "task": EDIT}),
    (img(cache=CacheOverrides(rdt=0.1, scm="fast")), T2I, IMAGES, {"cache": {
        "enabled": None, "rdt": 0.1, "max_warmup_steps": None, "max_cached_steps": None,
        "max_continuous_cached_steps": None, "scm_policy": "fast"}}),
])
def test_images_to_generation_request(body, task, caps, expected):
    request = images.to_generation_request(body, task, caps, size=(128, 64), steps=3, images=[], request_id="r")
    assert picked(request, expected) == expected
    assert (request.width, request.height, request.num_inference_steps) == (128, 64, 3)


@pytest.mark.parametrize(("n", "size", "param"), [(3, (128, 128), "n"), (1, (256, 256), "size")])
def test_images_over_the_budget(n, size, param):
    assert outcome(lambda: images.to_generation_request(img(n=n), T2I, I_BUDGET, size=size, steps=1, images=[],
                                                        request_id="r")) == (InvalidRequest, param, TOO_LARGE)


def test_usage_of_counts_patches_of_inputs_and_outputs():
    request = images.to_generation_request(img(n=2), EDIT, IMAGES, size=(128, 64), steps=1, request_id="r",
                                           images=[SimpleNamespace(size=(65, 64))])  # partial patches count
    usage = images.usage_of(GenerationResult(seeds=[], started_at=0, finished_at=0, prompt_tokens=1), request, IMAGES)
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens, usage.input_tokens_details.image_tokens,
            usage.input_tokens_details.text_tokens) == (21, 64, 85, 20, 1)


@pytest.mark.parametrize(("body", "default", "expected"), [
    (img(response_format="url"), "b64_json", "url"), (img(), "url", "url"), (img(model="dall-e-3"), "auto", "url"),
    (img(model="gpt-image-1"), "auto", "b64_json"), (img(model="dall-e-3"), "b64_json", "b64_json"),
])
def test_response_format(body, default, expected):
    assert images.response_format(body, default) == expected


@pytest.mark.parametrize(("body", "size", "expected"), [
    (img(), (64, 64), ("png", None, False, "64x64")),
    (img(model="dall-e-2", output_format="webp", output_compression=80), (128, 64), ("webp", 80, True, "128x64")),
])
def test_output_spec(body, size, expected):
    spec = images.OutputSpec(body, size, "high", "auto")
    assert (spec.format, spec.compression, spec.as_url, spec.size) == expected
    response = spec.response(5, [], None)
    assert (response.created, response.size, response.quality, response.background, response.output_format) == (
        5, expected[3], "high", "opaque", expected[0])


# --- OpenAI Videos ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("seconds", "fps", "caps", "expected"), [
    (4, 8, VIDEO, 33), (0.1, 8, VIDEO, 5), (2, 24, LTX, 49), (2, 30, MOCHI, 61),
])
def test_frames_for_seconds(seconds, fps, caps, expected):
    assert videos.frames_for_seconds(seconds, fps, caps) == expected


@pytest.mark.parametrize(("body", "task", "caps", "expected"), [
    (vid(seconds="2", size="64x64", seed=7), T2V, VIDEO, {"num_frames": 17, "seconds": "2", "seed": 7, "fps": 8,
                                                          "size": "64x64", "sized": True}),
    (vid(seconds="2.5"), T2V, VIDEO, {"num_frames": 21, "seconds": "2.5", "sized": False}),
    (vid(seconds=4, fps=16), T2V, VIDEO, {"num_frames": 65, "seconds": "4", "fps": 16}),
    (vid(num_frames=13), T2V, VIDEO, {"num_frames": 13, "seconds": "1.62"}),
    (vid(), T2V, VIDEO, {"num_frames": 9, "seconds": "1.12", "num_inference_steps": 4, "guidance_scale": None}),
    (vid(width=96, height=64, model="sora-2"), I2V, VIDEO, {"size": "96x64", "sized": True, "has_reference": True,
                                                            "task": "image-to-video"}),
    (vid(), T2V, GUIDED, {"guidance_scale": 5.0, "has_reference": False}),
])
def test_plan_video(body, task, caps, expected):
    settings, sized = videos.plan_video(body, task, caps, NAMES, "input_reference")
    expected = dict(expected)
    assert sized == expected.pop("sized", sized)
    assert picked(settings, expected) == expected


@pytest.mark.parametrize(("body", "caps", "expected"), [
    (vid(model="dall-e-3"), VIDEO, (NotFound, "model", "model_not_found")),
    (vid(), dataclasses.replace(VIDEO, tasks=frozenset({I2V})),
    (UnsupportedTask, "input_reference", "unsupported_task")),
    (vid(size="100x100"), VIDEO, BAD_SIZE), (vid(seconds="abc"), VIDEO, BAD_SECONDS),
    (vid(seconds="0"), VIDEO, BAD_SECONDS), (vid(seconds="nan"), VIDEO, BAD_SECONDS),
    (vid(seconds="4_0"), VIDEO, BAD_SECONDS), (vid(seconds="1e1"), VIDEO, BAD_SECONDS),
    (vid(seconds=float("inf")), VIDEO, BAD_SECONDS), (vid(seconds=120.5), VIDEO, BAD_SECONDS),
    (vid(seconds="4", num_frames=9), VIDEO, (InvalidRequest, "num_frames", None)),
    (vid(num_frames=10), VIDEO, (InvalidRequest, "num_frames", "invalid_num_frames")),
    (vid(seconds="120", fps=60), VIDEO, (InvalidRequest, "seconds", "too_many_frames")),
    (vid(guidance_scale=5.0), VIDEO, (InvalidRequest, "guidance_scale", UNSUPPORTED)),
    (vid(size="64x64", num_frames=997), V_BUDGET, (InvalidRequest, "num_frames", TOO_LARGE)),
    (vid(size="512x512", num_frames=9), V_BUDGET, (InvalidRequest, "size", TOO_LARGE)),
    (vid(size="64x64", seconds="20"), V_BUDGET, (InvalidRequest, "seconds", TOO_LARGE)),
])
def test_plan_video_refuses(body, caps, expected):
    assert outcome(lambda: videos.plan_video(body, T2V, caps, NAMES, "input_reference")) == expected


def test_plan_video_refuses_non_ascii_seconds():
    assert outcome(lambda: videos.plan_video(vid(seconds="\u0664"), T2V, VIDEO, NAMES, "r")) == BAD_SECONDS


@pytest.mark.parametrize("reference", [None, SimpleNamespace(size=(64, 64))])
def test_videos_to_generation_request(reference):
    settings = VideoSettings(task="image-to-video", prompt="p", width=96, height=64, num_frames=13, fps=8,
                             seconds="1.62", seed=9, num_inference_steps=3, negative_prompt="n", guidance_scale=4.0)
    request = videos.to_generation_request(settings, reference, request_id="v1")
    assert (request.task, request.prompt, request.width, request.height, request.num_frames, request.fps,
            request.seed, request.num_inference_steps, request.negative_prompt, request.guidance_scale,
            request.request_id) == (I2V, "p", 96, 64, 13, 8, 9, 3, "n", 4.0, "v1")
    assert request.images == ([] if reference is None else [reference])


# --- multipart forms and JSON bodies ------------------------------------------------------------------------------
@pytest.mark.parametrize(("items", "files", "expected"), [
    ([("prompt", "x"), ("n", "2")], set(), ({"prompt": "x", "n": "2"}, {})),
    ([("image[]", b"1"), ("image", b"2"), ("url[]", "a"), ("url[]", "b")], {"image"},
     ({"url": ["a", "b"]}, {"image": [b"1", b"2"]})),
    ([("cache[rdt]", "0.1"), ("cache[scm]", "fast"), ("mask_image", "http://m")], {"mask_image"},
     ({"cache": {"rdt": "0.1", "scm": "fast"}, "mask_image": "http://m"}, {})),  # a file field that takes text
])
def test_split_form(items, files, expected):
    form = forms.split_form(items, frozenset(files), frozenset({"mask_image"}))
    assert (form.fields, form.files) == expected


@pytest.mark.parametrize(("items", "files", "param"), [
    ([("a[b][c]", "1")], set(), "a[b][c]"), ([("k" * 100, "1")], set(), "k" * 80),
    ([("image", "s")], {"image"}, "image"),
    ([("prompt", b"x")], set(), "prompt"), ([("t", "1"), ("t", "2")], set(), "t"), ([("t", "1"),
    ("t[]", "2")], set(), "t"),
])
def test_split_form_refuses(items, files, param):
    assert outcome(lambda: forms.split_form(items, frozenset(files))) == (InvalidRequest, param, None)


@pytest.mark.parametrize(("fields", "cls", "attribute", "value"), [
    ({"prompt": "x", "n": "4"}, ImageGenerationRequest, "n", 4),
    ({"prompt": "x", "stream": "true"}, ImageEditRequest, "stream", True),
    ({"prompt": "x", "seconds": "4.5"}, VideoCreateRequest, "seconds", "4.5"),  # stays text: plan_video parses it
])
def test_convert_form(fields, cls, attribute, value):
    assert getattr(forms.convert_form(fields, cls), attribute) == value


@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"prompt": "x", "n": "two"}, "n", "invalid_value"), ({"prompt": "x", "n": "\u0663"}, "n", "invalid_value"),
    ({"prompt": "x", "lora": "a"}, "lora", UNSUPPORTED), ({"n": "2"}, "prompt", "invalid_value"),
    ({"prompt": "x", "num_inference_step": "2"}, "num_inference_step", "unknown_parameter"),
    ({"prompt": "x", "cache": {"colour": "1"}}, "cache.colour", "unknown_parameter"),
])
def test_convert_form_refuses(fields, param, code):
    assert outcome(lambda: forms.convert_form(fields, ImageEditRequest)) == (InvalidRequest, param, code)


@pytest.mark.parametrize(("body", "cls", "attribute", "value"), [
    (b'{"prompt": "x", "seconds": 4}', VideoCreateRequest, "seconds", 4.0),
    (b'{"prompt": "x", "sigmas": [1, 0.5], "num_inference_steps": 2}', GenerateRequest, "sigmas", [1.0, 0.5]),
])
def test_decode_json(body, cls, attribute, value):
    assert getattr(forms.decode_json(body, cls), attribute) == value


@pytest.mark.parametrize(("body", "cls", "param", "code"), [
    (b"nope", ImageGenerationRequest, None, "invalid_json"), (b"[1]", ImageGenerationRequest, None, "invalid_value"),
    (b'{"prompt": "x", "svg": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, ImageGenerationRequest, None,
     "invalid_json"),  # nested too deeply
    (b'{"prompt": "x", "sigmas": [1, "a"]}', GenerateRequest, "sigmas[1]", "invalid_value"),
    (b'{"prompt": "x", "enable_teacache": true}', ImageGenerationRequest, "enable_teacache", UNSUPPORTED),
])
def test_decode_json_refuses(body, cls, param, code):
    assert outcome(lambda: forms.decode_json(body, cls)) == (InvalidRequest, param, code)
