"""`--attn`: the attention backend of the transformer(s), by diffusers' names (`flash`, `_flash_3`, `sage`,
`_native_cudnn`, `flex`, `xformers`, `native`, ...). Checked at launch against diffusers' registry and the
packages each backend needs; applied with `set_attention_backend` on every transformer after loading."""

from __future__ import annotations

__all__ = ["apply_attention_backend", "attention_backends", "check_attention_backend"]

_TRANSFORMERS = ("transformer", "transformer_2")


def attention_backends() -> list[str]:
    from diffusers.models.attention_dispatch import AttentionBackendName

    return sorted(member.value for member in AttentionBackendName)


def check_attention_backend(name: str, device: str) -> str | None:
    """A launch problem with --attn (None when sound): an unknown name, or a backend whose package is missing."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    known = attention_backends()
    if name.lower() not in known:
        return f"--attn {name}: not an attention backend of diffusers; use one of {', '.join(known)}"
    backend = AttentionBackendName(name.lower())
    try:
        _check_attention_backend_requirements(backend)
    except (RuntimeError, ImportError) as exc:
        return f"--attn {name}: {exc}"
    gpu_only = not backend.value.startswith(("native", "_native_math", "flex"))
    if gpu_only and not device.startswith("cuda"):
        return f"--attn {name} runs on GPUs; this server runs on {device} (use native or _native_math)"
    return None


def apply_attention_backend(pipe, name: str) -> list[str]:
    """Set the backend on each transformer of `pipe`; returns the components it was set on."""
    applied = []
    for component in _TRANSFORMERS:
        module = getattr(pipe, component, None)
        if module is not None and hasattr(module, "set_attention_backend"):
            module.set_attention_backend(name.lower())
            applied.append(component)
    return applied
