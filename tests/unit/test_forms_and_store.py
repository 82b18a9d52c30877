"""Multipart form flattening (as the openai SDK sends it) and the store behind response_format=url."""

from __future__ import annotations

import pytest

import openai_dit.serving.output_store as store_module
from openai_dit.adapters.forms import convert_form, split_form
from openai_dit.errors import InvalidRequest
from openai_dit.protocol.images import ImageEditRequest
from openai_dit.serving.output_store import OutputStore

FILES = frozenset({"image", "mask"})


def test_split_form_gathers_lists_dicts_and_files():
    form = split_form([("prompt", "p"), ("image[]", b"a"), ("image", b"b"), ("tags[]", "x"), ("tags[]", "y"),
                       ("cache[rdt]", "0.5"), ("mask", b"m")], FILES)
    assert form.fields == {"prompt": "p", "tags": ["x", "y"], "cache": {"rdt": "0.5"}}
    assert form.files == {"image": [b"a", b"b"], "mask": [b"m"]}


@pytest.mark.parametrize(("items", "param"), [
    ([("n", "1"), ("n", "2")], "n"),
    ([("n", "1"), ("n[]", "2")], "n"),
    ([("n[]", "1"), ("n[a]", "2")], "n"),
    ([("image", "http://x")], "image"),
    ([("prompt", b"bytes")], "prompt"),
    ([("../etc", "x")], "../etc"),
])
def test_split_form_refuses_ambiguous_or_misplaced_fields(items, param):
    with pytest.raises(InvalidRequest) as caught:
        split_form(items, FILES)
    assert caught.value.param == param


def test_convert_form_converts_strings_and_names_the_bad_field():
    body = convert_form({"prompt": "p", "n": "3", "stream": "true", "guidance_scale": "2.5",
                         "cache": {"rdt": "0.1", "enabled": "false"}}, ImageEditRequest)
    assert (body.n, body.stream, body.guidance_scale, body.cache.rdt, body.cache.enabled) == (3, True, 2.5, 0.1, False)
    for fields, param in (({"prompt": "p", "n": "x"}, "n"), ({}, "prompt"),
                          ({"prompt": "p", "cache": {"rdt": "x"}}, "cache.rdt")):
        with pytest.raises(InvalidRequest) as caught:
            convert_form(fields, ImageEditRequest)
        assert caught.value.param == param


def test_store_names_are_unguessable_and_expire(monkeypatch):
    store = OutputStore(ttl_seconds=10, max_bytes=1000)
    a, b = store.put(b"a" * 10, "png", "image/png"), store.put(b"b" * 10, "png", "image/png")
    assert a != b and len(a) == len("x" * 32 + ".png")
    assert store.get(a).data == b"a" * 10
    for bad in ("../" + a, a.replace(".png", ".exe"), "", "x" * 300):
        assert store.get(bad) is None
    now = store_module.time.monotonic() + 11
    monkeypatch.setattr(store_module.time, "monotonic", lambda: now)
    assert store.get(a) is None
    store.put(b"c", "png", "image/png")  # expired entries are dropped on the next put
    assert store.size_bytes == 1


def test_store_drops_the_oldest_when_full():
    store = OutputStore(ttl_seconds=100, max_bytes=25)
    names = [store.put(bytes(10), "png", "image/png") for _ in range(3)]
    assert store.get(names[0]) is None and store.get(names[1]) and store.get(names[2])
    assert store.size_bytes == 20
