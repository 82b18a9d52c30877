"""Tokenizers built offline from in-memory vocabularies, for the built-in tiny models.

Each one covers every input (byte-level or character-level), so no prompt produces an unknown token.
"""

from __future__ import annotations

import string

from transformers import CLIPTokenizer, Qwen2Tokenizer, T5Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

__all__ = ["QWEN_SPECIAL_TOKENS", "clip_tokenizer", "qwen_tokenizer", "t5_tokenizer"]

QWEN_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# A minimal Qwen chat template: what Flux2-Klein and Qwen-Image call `apply_chat_template` with.
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_symbols() -> list[str]:
    return list(bytes_to_unicode().values())


def clip_tokenizer() -> CLIPTokenizer:
    """Byte-level CLIP tokenizer: 256 byte symbols, their word-final forms, start and end tokens, no merges."""
    symbols = _byte_symbols()
    vocab = {symbol: i for i, symbol in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    # transformers 5 defaults model_max_length to ~1e30, which Flux would use as the CLIP length.
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer(model_max_length: int = 512) -> T5Tokenizer:
    """Character-level Unigram tokenizer in the T5/UMT5 layout (pad=0, eos=1, unk=2)."""
    characters = string.ascii_letters + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in characters]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def qwen_tokenizer() -> Qwen2Tokenizer:
    """Byte-level Qwen2 tokenizer with the chat and vision special tokens and a chat template."""
    vocab = {symbol: i for i, symbol in enumerate(_byte_symbols())}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=1024)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer
