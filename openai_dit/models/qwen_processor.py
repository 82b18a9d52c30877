"""A Qwen2-VL processor that needs no torchvision.

transformers 5 cannot build `Qwen2VLProcessor` without torchvision (its video processor needs it), and no
torchvision build matches the CPU torch. Image editing needs only the tokenizer and the PIL image processor,
so this subclass loads those two and leaves the video processor out. Diffusers pipelines find it through
`model_index.json` as `["openai_dit", "Qwen2VLImageOnlyProcessor"]`.
"""

from __future__ import annotations

import os

from transformers import AutoTokenizer, Qwen2VLImageProcessorPil, Qwen2VLProcessor

__all__ = ["Qwen2VLImageOnlyProcessor"]


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """`Qwen2VLProcessor` with the PIL image processor and no video processor."""

    # transformers derives the processor's parts from this signature: no `video_processor` here.
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                         chat_template=chat_template, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):  # type: ignore[override]
        kwargs.pop("torch_dtype", None)
        kwargs.pop("dtype", None)
        subfolder = kwargs.pop("subfolder", "")
        path = os.path.join(pretrained_model_name_or_path, subfolder) if subfolder else pretrained_model_name_or_path
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, **kwargs)
        return cls(image_processor=image_processor, tokenizer=tokenizer,
                   chat_template=getattr(tokenizer, "chat_template", None))
