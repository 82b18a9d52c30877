"""The family table as data: every entry is coherent (no torch, no model)."""

from __future__ import annotations

import pytest

from openai_dit.models.families import FAMILIES, FrameRule
from openai_dit.types import Task

PREVIEW_LAYOUTS = {"flux", "flux2", "qwen-image"}  # what previews.decode_preview decodes
SEPARATE_CFG_RULES = {"negative_prompt", "guidance", "true_cfg", "guider"}  # cache.separate_guidance


@pytest.mark.parametrize("pipeline_class", sorted(FAMILIES))
def test_each_entry_is_coherent(pipeline_class):
    family = FAMILIES[pipeline_class]
    assert family.tasks and family.name
    video = any(task.is_video for task in family.tasks)
    assert all(task.is_video == video for task in family.tasks)  # one pipeline class: images or videos
    assert (family.frames is not None) == video and (family.default_fps is not None) == video
    takes_images = bool(family.tasks & {Task.IMAGE_EDIT, Task.IMAGE_TO_VIDEO})
    assert (family.max_input_images >= 1) == takes_images
    if family.default_size:
        assert all(side % family.size_multiple == 0 for side in family.default_size), family.default_size
    if family.default_frames:
        assert family.frames.accepts(family.default_frames), (family.frames, family.default_frames)
    if family.mask_required:
        assert family.mask_keyword and family.tasks == {Task.IMAGE_EDIT}
    assert family.previews is None or (family.previews in PREVIEW_LAYOUTS and not video)
    assert family.separate_cfg is None or family.separate_cfg in SEPARATE_CFG_RULES
    assert family.size_buckets in (None, "hunyuan-video-1.5")
    if family.cache_refused:
        assert "{version}" in family.cache_refused
    assert family.min_steps >= 1


@pytest.mark.parametrize(("rule", "good", "bad", "around"), [
    (FrameRule(4), [1, 5, 9, 81], [2, 8, 80], {10: (9, 13)}),
    (FrameRule(6), [1, 7, 13, 85], [9, 12], {9: (7, 13)}),
    (FrameRule(8), [9, 121, 161], [13, 120], {13: (9, 17)}),
])
def test_frame_rules(rule, good, bad, around):
    assert all(rule.accepts(n) for n in good) and not any(rule.accepts(n) for n in bad)
    for frames, expected in around.items():
        assert rule.around(frames) == expected
    assert str(rule) == f"{rule.multiple}k+1"
