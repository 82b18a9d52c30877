"""Tiny single-stream / MM-DiT image pipelines: CogView3-Plus, CogView4, HunyuanDiT, SD3, Chroma, Sana, Z-Image."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .defaults import IMAGE_DEFAULTS

__all__ = ["BUILDERS"]

_TEXT_DIM = 32  # hidden size of every tiny text encoder (and the transformers' text input width)


def _kl_vae(latent_channels: int = 4, **factors):
    """An 8x AutoencoderKL (4 stages, as in every real checkpoint of these families: `vae_scale_factor` 8)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=latent_channels, norm_num_groups=4,
        layers_per_block=1, sample_size=64, use_quant_conv=False, use_post_quant_conv=False, **factors,
    )


def _t5(tokenizer, dim: int = _TEXT_DIM):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(  # type: ignore[call-arg]  # typed configs omit kwargs they accept
        vocab_size=len(tokenizer), d_model=dim, d_kv=dim // 2, d_ff=dim * 2, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))


def _clip(tokenizer, dim: int, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=dim, intermediate_size=dim * 2, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=dim,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _decoder_config(tokenizer, **extra) -> dict:
    """Config keywords shared by the tiny decoder-only text encoders (GLM, Gemma2, Qwen3)."""
    config = dict(vocab_size=len(tokenizer), hidden_size=_TEXT_DIM, intermediate_size=_TEXT_DIM, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return {**config, **extra}


def _cogview3_plus():
    from diffusers import CogVideoXDDIMScheduler, CogView3PlusPipeline, CogView3PlusTransformer2DModel

    from .tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = _t5(tokenizer)
    # sample_size * vae_scale_factor is the pipeline's default size (256 here); pos_embed_max_size caps the
    # latent patch grid per side (64 -> up to 1024 px).
    transformer = CogView3PlusTransformer2DModel(
        patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        text_embed_dim=_TEXT_DIM, time_embed_dim=8, condition_dim=4, pos_embed_max_size=64, sample_size=32,
    )
    vae = _kl_vae(scaling_factor=1.0)
    scheduler = CogVideoXDDIMScheduler(beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                       prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                       set_alpha_to_one=True, timestep_spacing="trailing")
    return CogView3PlusPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                scheduler=scheduler), dict(IMAGE_DEFAULTS)


def _cogview4():
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import GlmConfig, GlmModel

    from .tokenizers import qwen_tokenizer

    # The real GLM tokenizer prepends "[gMASK]<sop>", so even an empty (negative) prompt gives tokens; the pipeline
    # breaks on an empty sequence. The byte-level stand-in gets a start token that it always prepends.
    tokenizer = qwen_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "[gMASK]"})
    tokenizer.add_bos_token = True
    torch.manual_seed(0)
    text_encoder = GlmModel(GlmConfig(**_decoder_config(tokenizer)))
    transformer = CogView4Transformer2DModel(
        patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        text_embed_dim=_TEXT_DIM, time_embed_dim=8, condition_dim=4, pos_embed_max_size=64, sample_size=32,
    )
    vae = _kl_vae(scaling_factor=1.0)
    scheduler = FlowMatchEulerDiscreteScheduler(base_shift=0.25, max_shift=0.75, base_image_seq_len=256,
                                                use_dynamic_shifting=True, time_shift_type="linear")
    return CogView4Pipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                            scheduler=scheduler), dict(IMAGE_DEFAULTS)


def _hunyuan_dit():
    from diffusers import DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel

    from .tokenizers import clip_tokenizer, t5_tokenizer

    # The byte-level CLIP tokenizer stands in for the Chinese BERT tokenizer (the pipeline pads it to 77 tokens).
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = BertModel(BertConfig(
        vocab_size=len(tokenizer), hidden_size=_TEXT_DIM, intermediate_size=_TEXT_DIM * 2, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, pad_token_id=tokenizer.pad_token_id,
    ))
    text_encoder_2 = _t5(tokenizer_2)
    # The pipeline hard-codes the text lengths (77 and 256) and an 8x VAE.
    transformer = HunyuanDiT2DModel(
        sample_size=32, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=2, in_channels=4,
        hidden_size=16, cross_attention_dim=_TEXT_DIM, cross_attention_dim_t5=_TEXT_DIM, pooled_projection_dim=16,
        text_len=77, text_len_t5=256,
    )
    vae = _kl_vae(scaling_factor=0.13025)
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.018, beta_schedule="scaled_linear", clip_sample=False,
                              prediction_type="v_prediction", steps_offset=1)
    pipe = HunyuanDiTPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                              scheduler=scheduler, safety_checker=None, feature_extractor=None,
                              requires_safety_checker=False, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)
    return pipe, dict(IMAGE_DEFAULTS)


def _sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    from .tokenizers import clip_tokenizer, t5_tokenizer

    clip_dim = _TEXT_DIM // 2  # the two CLIP hidden states are concatenated, then padded to the T5 width
    tokenizer, tokenizer_2, tokenizer_3 = clip_tokenizer(), clip_tokenizer(), t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = _clip(tokenizer, clip_dim, projection=True)
    text_encoder_2 = _clip(tokenizer_2, clip_dim, projection=True)
    text_encoder_3 = _t5(tokenizer_3)
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=_TEXT_DIM, caption_projection_dim=16,
        pooled_projection_dim=2 * clip_dim, pos_embed_max_size=64,
    )
    vae = _kl_vae(scaling_factor=1.5305, shift_factor=0.0609)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    return pipe, dict(IMAGE_DEFAULTS)


def _chroma():
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    from .tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = _t5(tokenizer)
    # FLUX layout: 2x2 latent patches are packed into channels (in_channels = 4 * latent_channels).
    transformer = ChromaTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=_TEXT_DIM, axes_dims_rope=(4, 6, 6), approximator_num_channels=16,
        approximator_hidden_dim=32, approximator_layers=1,
    )
    vae = _kl_vae(scaling_factor=0.3611, shift_factor=0.1159)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    return ChromaPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=transformer, image_encoder=None, feature_extractor=None), dict(IMAGE_DEFAULTS)


def _sana():
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    from .tokenizers import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    tokenizer.model_max_length = 4096  # room for the default complex_human_instruction (~1000 bytes) + 300 tokens
    torch.manual_seed(0)
    # Gemma2 only runs eager attention, over ~1300 byte tokens by default: one layer, one head keeps it quick.
    text_encoder = Gemma2Model(Gemma2Config(**_decoder_config(
        tokenizer, bos_token_id=tokenizer.eos_token_id, max_position_embeddings=4096, sliding_window=4096,
        num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
    )))
    # sample_size 32 picks ASPECT_RATIO_1024_BIN when use_resolution_binning is on (as Sana 1024px does).
    transformer = SanaTransformer2DModel(
        patch_size=1, in_channels=4, out_channels=4, num_layers=2, num_attention_heads=2, attention_head_dim=8,
        num_cross_attention_heads=2, cross_attention_head_dim=8, cross_attention_dim=16, caption_channels=_TEXT_DIM,
        sample_size=32,
    )
    # A 32x deep-compression autoencoder like DC-AE f32: 6 stages (vae_scale_factor 32).
    vae = AutoencoderDC(
        latent_channels=4, attention_head_dim=8,
        encoder_block_types=("ResBlock",) * 5 + ("EfficientViTBlock",),
        decoder_block_types=("ResBlock",) * 5 + ("EfficientViTBlock",),
        encoder_block_out_channels=(8,) * 6, decoder_block_out_channels=(8,) * 6,
        encoder_layers_per_block=(1,) * 6, decoder_layers_per_block=(1,) * 6,
        encoder_qkv_multiscales=((),) * 5 + ((5,),), decoder_qkv_multiscales=((),) * 5 + ((5,),),
        downsample_block_type="Conv", upsample_block_type="interpolate", scaling_factor=0.41407,
    )
    scheduler = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return SanaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                        scheduler=scheduler), dict(IMAGE_DEFAULTS)


def _z_image():
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    from .tokenizers import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    torch.manual_seed(0)
    text_encoder = Qwen3Model(Qwen3Config(**_decoder_config(tokenizer)))
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32, n_layers=2, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, cap_feat_dim=_TEXT_DIM, axes_dims=[8, 4, 4], axes_lens=[1024, 128, 128],
    )
    # The pad tokens are created with torch.empty: give them seeded values.
    with torch.no_grad():
        transformer.x_pad_token.normal_(std=0.02)
        transformer.cap_pad_token.normal_(std=0.02)
    vae = _kl_vae(scaling_factor=0.3611, shift_factor=0.1159)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return ZImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=transformer), dict(IMAGE_DEFAULTS)


BUILDERS: dict[str, Callable[[], tuple]] = {
    "tiny:cogview3-plus": _cogview3_plus,
    "tiny:cogview4": _cogview4,
    "tiny:hunyuan-dit": _hunyuan_dit,
    "tiny:sd3": _sd3,
    "tiny:chroma": _chroma,
    "tiny:sana": _sana,
    "tiny:z-image": _z_image,
}
