"""Defaults shared by the built-in tiny models: small enough to be quick on a CPU."""

from __future__ import annotations

__all__ = ["IMAGE_DEFAULTS", "VIDEO_DEFAULTS"]

# Hints for requests that name no size (see HINTS_FILE): the tiny models serve small sizes by default.
IMAGE_DEFAULTS = {"default_width": 256, "default_height": 256, "default_num_inference_steps": 8}
VIDEO_DEFAULTS = {"default_width": 64, "default_height": 64, "default_num_frames": 9,
                  "default_num_inference_steps": 8}
