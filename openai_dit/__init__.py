"""openai-dit: an OpenAI-compatible and cache-dit native server for diffusion transformers.

Importing the package imports no torch; heavy modules load on first use.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
