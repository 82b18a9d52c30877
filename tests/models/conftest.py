import pytest

from openai_dit.config import ServerConfig


@pytest.fixture(scope="session")
def load():
    """Load a model through the server's own loader (cached per configuration for the session)."""
    from openai_dit.models.executor import PipelineExecutor
    from openai_dit.models.loader import load_model

    cache: dict = {}

    def _load(model_path: str = "tiny:flux", fresh: bool = False, **overrides) -> PipelineExecutor:
        key = (model_path, tuple(sorted(overrides.items())))
        if fresh or key not in cache:
            cache[key] = PipelineExecutor(load_model(ServerConfig(model_path=model_path, **overrides)))
        return cache[key]

    return _load
