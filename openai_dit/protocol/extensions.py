"""Fields of the peers' OpenAI-compatible servers (vLLM-Omni, SGLang diffusion) that this server does not take.

The fields they share with this server (width, height, num_frames, fps, num_inference_steps, guidance_scale,
guidance_scale_2, true_cfg_scale, negative_prompt, seed, max_sequence_length; url/url[] and mask_image in edits;
image_reference and reference_url in videos) are fields of the request Structs and mean the same. These are the
others: each is a 400 naming it (`unsupported_parameter`), never silently dropped. Any other unknown field is a
400 too (`unknown_parameter`), as OpenAI answers.
"""

from __future__ import annotations

from ..errors import InvalidRequest

__all__ = ["UNSUPPORTED_PEER_FIELDS", "unknown_field"]

# field -> what it asks for, in the client's words.
UNSUPPORTED_PEER_FIELDS: dict[str, str] = {
    "lora": "a LoRA per request (this server loads one at start-up: --lora-path)",
    "enable_teacache": "TeaCache (this server caches with cache-dit: --cache, or the `cache` field)",
    "enable_cache_dit": "cache-dit per request (use the `cache` field: {\"enabled\": false} and the step settings)",
    "cache_dit_params": "cache-dit parameters per request (use the `cache` field)",
    "flow_shift": "a scheduler shift per request",
    "boundary_ratio": "a Wan 2.2 expert boundary per request (it is the checkpoint's)",
    "generator_device": "the noise device (this server draws noise on the CPU, so seeds reproduce on any device)",
    "extra_params": "model-specific extras", "extra_args": "model-specific extras",
    "extra_json": "model-specific extras",
    "diffusers_kwargs": "raw pipeline arguments",
    "output_quality": "SGLang's output quality (use output_compression)",
    "enable_upscaling": "upscaling", "upscaling_model_path": "upscaling", "upscaling_scale": "upscaling",
    "enable_frame_interpolation": "frame interpolation", "frame_interpolation_exp": "frame interpolation",
    "frame_interpolation_scale": "frame interpolation", "frame_interpolation_model_path": "frame interpolation",
    "perf_dump_path": "profiling", "profile": "profiling", "num_profiled_timesteps": "profiling",
    "profile_all_stages": "profiling", "return_stage_metrics": "stage metrics",
    "progressive_mode": "progressive previews", "progressive_levels": "progressive previews",
    "progressive_delta": "progressive previews",
    "bot_task": "model modes", "layers": "layered outputs", "resolution": "layered outputs",
    "system_prompt": "system prompts", "use_system_prompt": "system prompts", "sys_type": "system prompts",
    "enhance_prompt": "prompt enhancement", "task_type": "a task override (the inputs select the task)",
    "vae_use_slicing": "VAE slicing per request", "vae_use_tiling": "VAE tiling per request",
    "infer_align_image_size": "size alignment", "strength": "img2img strength",
    "reference_image": "a second reference image", "num_outputs_per_prompt": "several videos per job",
    "generate_sound": "generated sound", "sound_duration": "generated sound",
    "aspect_ratio": "an aspect-ratio preset (send size or width/height)",
    "short_edge": "a short-edge preset (send size or width/height)", "start_time_seconds": "video continuation",
    "control_reference": "control videos", "control_type": "control videos", "video_reference": "video inputs",
    "audio_reference": "audio inputs", "input_references": "several reference images",
    "source_video": "video inputs", "source_audio": "audio inputs", "video_noise_mask": "noise masks",
    "audio_noise_mask": "noise masks", "video_url": "video inputs", "video_path": "video inputs",
    "x264_preset": "encoder settings", "output_path": "server-side output paths (see the native output_format)",
    "cfg_gate_step": "CFG gating", "attention_backend_override": "per-request attention backends (--attn)",
    "skip_softmax_params": "attention tweaks",
}


def unknown_field(name: str) -> InvalidRequest:
    """The 400 for a field the request's schema does not have."""
    shown = name[:80]
    if name in UNSUPPORTED_PEER_FIELDS:
        return InvalidRequest(f"'{shown}' (a vLLM-Omni / SGLang extension: {UNSUPPORTED_PEER_FIELDS[name]}) is not "
                              "supported by this server.", param=shown, code="unsupported_parameter")
    return InvalidRequest(f"Unknown parameter: '{shown}'.", param=shown, code="unknown_parameter")
