"""Partial images: previews decoded with the model's VAE from the latents of an unfinished call.

A preview shows the flow-matching estimate of the clean latents at that step (x0 = x_t - sigma_t * v, taken from
the scheduler step), which looks like the final image early on, rather than the noisy x_t. Each family packs
its latents differently before the VAE; `preview_family` says whether a pipeline class has a decoder here.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

__all__ = ["DenoisedEstimate", "decode_preview", "preview_family", "preview_steps", "vae_for_preview"]


def preview_family(pipeline_class: str) -> str | None:
    """The latent layout of a pipeline class, or None when this server cannot decode its previews."""
    if pipeline_class.startswith("Flux2"):
        return "flux2"
    if pipeline_class.startswith("QwenImage"):
        return "qwen-image"
    if pipeline_class.startswith("Flux"):
        return "flux"
    return None


def preview_steps(total_steps: int, count: int) -> list[int]:
    """The steps (1-based) after which to decode `count` previews, spread evenly; never the last step (that is
    the final image), so short runs get fewer previews."""
    steps = {round(k * total_steps / (count + 1)) for k in range(1, count + 1)}
    return sorted(s for s in steps if 1 <= s < total_steps)


class DenoisedEstimate:
    """For one call, wraps `scheduler.step` to keep what the x0 estimate needs from the latest step.

    Only flow-matching schedulers (the image DiTs served here) have that estimate; for others, or with no
    scheduler (no previews wanted), `latents()` returns None and the caller previews the current latents."""

    def __init__(self, scheduler: Any | None) -> None:
        self._scheduler = scheduler
        self._flow = "FlowMatch" in type(scheduler).__name__ and hasattr(scheduler, "sigmas")
        self._last: tuple[Any, Any, Any] | None = None

    def __enter__(self) -> DenoisedEstimate:
        scheduler = self._scheduler
        if self._flow and scheduler is not None:
            original = scheduler.step

            def step(model_output, timestep, sample, *args, **kwargs):
                out = original(model_output, timestep, sample, *args, **kwargs)
                index = scheduler.step_index  # already advanced past this step
                self._last = (model_output, sample, scheduler.sigmas[index - 1])
                return out

            scheduler.step = step  # an instance attribute: removed again on exit
        return self

    def __exit__(self, *exc_info) -> None:
        if self._flow and self._scheduler is not None and "step" in vars(self._scheduler):
            del self._scheduler.step
        self._last = None

    def latents(self):
        if self._last is None:
            return None
        model_output, sample, sigma = self._last
        return sample.float() - sigma.to(sample.device).float() * model_output.float()


@contextmanager
def vae_for_preview(vae, execution_device: str | None):
    """The VAE ready to decode a preview. With model CPU offload (`execution_device` given) the VAE is brought to
    the GPU on its own, around accelerate's offload hook: through the hook, the transformer would be moved off the
    GPU for the preview and back for the next step."""
    if execution_device is None:
        yield vae
        return
    hook = vae.__dict__.pop("_hf_hook", None)
    home = next(vae.parameters()).device
    vae.to(execution_device)
    try:
        yield vae
    finally:
        vae.to(home)
        if hook is not None:
            vae._hf_hook = hook


def decode_preview(pipe: Any, family: str, latents, width: int, height: int, *,
                   offloaded_to: str | None = None):
    """Packed latents (B, L, C) of a `family` pipeline -> (B, H, W, 3) float images in [0, 1] (numpy). The latents
    go to the VAE's device and dtype (a device map may hold it elsewhere); `offloaded_to`: see vae_for_preview."""
    import torch

    factor = pipe.vae_scale_factor
    with torch.inference_mode(), vae_for_preview(pipe.vae, offloaded_to) as vae:
        latents = latents.to(next(vae.parameters()).device)
        if family == "flux":
            x = pipe._unpack_latents(latents, height, width, factor)
            x = x / vae.config.scaling_factor + vae.config.shift_factor
            image = vae.decode(x.to(vae.dtype), return_dict=False)[0]
        elif family == "flux2":
            batch, _, channels = latents.shape
            h, w = height // (factor * 2), width // (factor * 2)
            x = latents.permute(0, 2, 1).reshape(batch, channels, h, w)  # latent ids are in raster order
            mean = vae.bn.running_mean.view(1, -1, 1, 1).to(x.device, x.dtype)
            std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(x.device, x.dtype)
            x = pipe._unpatchify_latents(x * std + mean)
            image = vae.decode(x.to(vae.dtype), return_dict=False)[0]
        elif family == "qwen-image":
            x = pipe._unpack_latents(latents, height, width, factor)
            shape = (1, vae.config.z_dim, 1, 1, 1)
            mean = torch.tensor(vae.config.latents_mean).view(shape).to(x.device, x.dtype)
            std = torch.tensor(vae.config.latents_std).view(shape).to(x.device, x.dtype)
            image = vae.decode((x * std + mean).to(vae.dtype), return_dict=False)[0][:, :, 0]
        else:
            raise ValueError(f"no preview decoder for {family!r}")
        return pipe.image_processor.postprocess(image, output_type="np")
