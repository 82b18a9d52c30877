import os
import sys
from pathlib import Path

# Built-in tiny models are cached per test session unless a cache is given.
os.environ.setdefault("OPENAI_DIT_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "test-models"))
os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "warning")
sys.path.insert(0, str(Path(__file__).resolve().parent))
