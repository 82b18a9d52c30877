"""scripts/gpu_check.py validates its plan on any machine (the GPU run itself needs a GPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs scripts/gpu_check.py as a process

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def test_the_dry_run_validates_every_check_on_the_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    planned = [line for line in lines if line.startswith("PLAN")]
    for name in ("bf16-image", "bf16-video", "seeds", "cache", "compile", "float8", "nf4", "lora", "batching",
                 "memory", "offload-previews"):
        assert any(f" {name} " in line for line in planned), name
    assert lines[-1] == f"gpu: dry run, {len(planned)}/{len(planned)} checks planned"


def test_without_a_gpu_the_real_run_says_so():
    import torch

    if torch.cuda.is_available():
        return
    done = subprocess.run([sys.executable, str(SCRIPT), "--only", "seeds"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "no CUDA device" in done.stdout
