"""Tiny Qwen-Image pipelines."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .defaults import IMAGE_DEFAULTS

__all__ = ["BUILDERS"]


def _qwen_components(with_processor: bool) -> dict:
    """The Qwen-Image family's parts: Qwen2.5-VL text encoder, transformer, VAE, scheduler (and the processor
    of the edit pipelines, which hand the input image to the text encoder)."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from ..qwen_processor import Qwen2VLImageOnlyProcessor
    from .tokenizers import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    ids = {t: int(tokenizer.convert_tokens_to_ids(t))  # type: ignore[arg-type]  # one token: one id
           for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")}
    parts = {}
    if with_processor:
        # Keep the vision tower's input small: the pipelines hand it ~384x384 (Edit: ~1 MP) condition images.
        image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112})
        parts["processor"] = Qwen2VLImageOnlyProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                                       chat_template=tokenizer.chat_template)
    torch.manual_seed(0)
    text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(  # type: ignore[call-arg]  # typed configs omit kwargs they accept
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        vocab_size=len(tokenizer), vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    ))
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                                shift_terminal=0.02, time_shift_type="exponential")
    return dict(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                transformer=transformer, **parts)


def _qwen_image():
    from diffusers import QwenImagePipeline

    return QwenImagePipeline(**_qwen_components(with_processor=False)), dict(IMAGE_DEFAULTS)


def _qwen_image_edit():
    from diffusers import QwenImageEditPipeline

    pipe = QwenImageEditPipeline(**_qwen_components(with_processor=True))
    # `__call__` resizes the input to `calculate_dimensions(1024 * 1024, ratio)` inline (no module constant, unlike
    # Edit Plus): a ~1 MP VAE encode, seconds on a CPU. The hint asks the loader for 128x128 instead (see
    # `loader._apply_hints`).
    return pipe, {"vae_image_area": 128 * 128, **IMAGE_DEFAULTS}


def _qwen_image_edit_plus():
    from diffusers import QwenImageEditPlusPipeline

    pipe = QwenImageEditPlusPipeline(**_qwen_components(with_processor=True))
    # The pipeline resizes every input to ~1 MP before the VAE; a tiny model serves at 128x128 instead.
    return pipe, {"vae_image_area": 128 * 128, "condition_image_area": 112 * 112, **IMAGE_DEFAULTS}


BUILDERS: dict[str, Callable[[], tuple]] = {
    "tiny:qwen-image": _qwen_image,
    "tiny:qwen-image-edit": _qwen_image_edit,
    "tiny:qwen-image-edit-plus": _qwen_image_edit_plus,
}
