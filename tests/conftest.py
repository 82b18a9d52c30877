import os
import sys
from pathlib import Path

# Built-in tiny models are cached per test session unless a cache is given.
os.environ.setdefault("OPENAI_DIT_TINY_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "test-models"))
os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "warning")
sys.path.insert(0, str(Path(__file__).resolve().parent))

_TESTS = Path(__file__).resolve().parent
_INTEGRATION = _TESTS / "integration"
# Modules whose tests are all marked slow (`pytestmark`): where the marker expression leaves slow tests out, they
# are not even imported (the fuzzing module builds its hundreds of cases at import).
_SLOW_MODULES = {_TESTS / "unit" / name for name in ("test_openapi_fuzz.py", "test_gpu_check.py",
                                                     "test_storage_faults.py", "test_services.py")}


def _deselected(config, marks: set[str]) -> bool:
    """Whether `-m` leaves out every test that carries exactly these marks."""
    from _pytest.mark.expression import Expression

    markexpr = config.getoption("markexpr", "")
    return bool(markexpr) and not Expression.compile(markexpr).evaluate(lambda name, **kwargs: name in marks)


def pytest_ignore_collect(collection_path, config):
    if collection_path in _SLOW_MODULES and _deselected(config, {"slow"}):
        return True
    if collection_path == _INTEGRATION and _deselected(config, {"integration", "slow"}):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    """Every test under tests/integration starts real server processes: `integration`, and `slow` too. A test that
    loads a real (tiny) pipeline through the `load` fixture is `slow`: the first one in a process imports diffusers'
    pipelines (some 8 s here)."""
    import pytest

    for item in items:
        if _INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)
        elif "load" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
