"""The parameter table, table-driven: which parameters a model refuses (in every API alike), how each shapes the
batch key, and the pipeline keyword each becomes."""

from __future__ import annotations

import dataclasses

import pytest
from fakes import INPAINT, TEXT_TO_IMAGE, VIDEO

from openai_dit.errors import InvalidRequest
from openai_dit.parameters import PARAMETERS, Batching, batch_key_part, call_arguments, check_parameters
from openai_dit.types import GenerationRequest, Task

LTX_LIKE = dataclasses.replace(VIDEO, fps_keyword="frame_rate",
                               call_parameters=VIDEO.call_parameters | {"frame_rate", "guidance_scale"})
VALUES = {"negative_prompt": "blurry", "guidance_scale": 4.0, "guidance_scale_2": 3.0, "true_cfg_scale": 4.0,
          "sigmas": [1.0, 0.5], "max_sequence_length": 128, "num_frames": 9, "fps": 24, "mask": object()}


def request(**fields) -> GenerationRequest:
    return GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt="p", width=64, height=64, num_inference_steps=2, seed=1,
                             **fields)


def test_the_table_covers_every_optional_parameter_of_the_request():
    fields = {f.name for f in dataclasses.fields(GenerationRequest)}
    structural = {"task", "prompt", "width", "height", "num_inference_steps", "seed", "num_outputs", "images",
                  "partial_images", "cache", "request_id"}
    assert {p.name for p in PARAMETERS} == fields - structural
    assert set(VALUES) == {p.name for p in PARAMETERS}


@pytest.mark.parametrize(("caps", "accepted"), [
    (TEXT_TO_IMAGE, {"negative_prompt", "guidance_scale", "sigmas", "fps"}),
    (INPAINT, {"mask", "fps"}),
    (LTX_LIKE, {"negative_prompt", "num_frames", "guidance_scale", "fps"}),
])
@pytest.mark.parametrize("name", [p.name for p in PARAMETERS])
def test_a_parameter_the_pipeline_cannot_take_is_a_400_naming_it(caps, accepted, name):
    if name in accepted:
        check_parameters({name: VALUES[name]}, caps, "m")
        return
    with pytest.raises(InvalidRequest) as refused:
        check_parameters({name: VALUES[name]}, caps, "m")
    assert refused.value.param == name and refused.value.code == "unsupported_parameter"
    assert refused.value.status_code == 400


def test_absent_parameters_are_never_refused():
    check_parameters({p.name: None for p in PARAMETERS}, INPAINT, "m")


@pytest.mark.parametrize("parameter", PARAMETERS, ids=lambda p: p.name)
def test_each_parameter_shapes_the_batch_key_as_the_table_says(parameter):
    value = VALUES[parameter.name]
    plain, given = request(), request(**{parameter.name: value})
    if parameter.batching is Batching.ALONE:
        assert given.batch_key is None and plain.batch_key is not None
    elif parameter.batching is Batching.SAME:
        other = {"sigmas": [1.0, 0.2], "negative_prompt": "x"}.get(parameter.name, 2 * value)
        assert given.batch_key != plain.batch_key
        assert given.batch_key == request(**{parameter.name: value}).batch_key
        assert given.batch_key != request(**{parameter.name: other}).batch_key
    else:  # a value per output: requests share a call when all or none give one
        assert given.batch_key != plain.batch_key
        assert given.batch_key == request(**{parameter.name: "something else"}).batch_key
    assert batch_key_part(given) is None or len(batch_key_part(given)) == len(batch_key_part(plain))


def test_call_arguments_use_the_family_keywords_and_one_value_per_output():
    ltx = call_arguments([request(fps=24, num_frames=9, guidance_scale=3.0)], LTX_LIKE)
    assert ltx == {"frame_rate": 24, "num_frames": 9, "guidance_scale": 3.0}
    wan_like = call_arguments([request(fps=16, num_frames=9)], VIDEO)  # no frame-rate keyword: the MP4's rate only
    assert wan_like == {"num_frames": 9}
    first, second = request(negative_prompt="a", num_outputs=2), request(negative_prompt="b")
    assert call_arguments([first, second], TEXT_TO_IMAGE)["negative_prompt"] == ["a", "a", "b"]
    assert call_arguments([first], TEXT_TO_IMAGE)["negative_prompt"] == "a"
    assert "mask_image" in call_arguments([request(mask="m")], INPAINT)
