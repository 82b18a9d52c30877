"""The CLI: every flag (the old server's included) parses into the config; bad launches are refused early."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from openai_dit.cli import _check_launch, _parser
from openai_dit.config import ServerConfig, add_arguments, config_from_args, flag_table

OLD_FLAGS = ["--model-path", "--host", "--port", "--device", "--dtype", "--cache", "--rdt", "--Fn", "--Bn",
             "--max-warmup-steps", "--max-cached-steps", "--max-continuous-cached-steps", "--taylorseer",
             "--taylorseer-order", "--parallel-type", "--parallel-text-encoder", "--parallel-vae", "--compile",
             "--quantize-type", "--pipeline-quant-config-path", "--lora-path", "--lora-name", "--disable-fuse-lora",
             "--enable-cpu-offload", "--device-map"]


def parse(*argv: str) -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_every_old_flag_parses_into_the_config():
    config = parse("--model-path", "black-forest-labs/FLUX.1-dev", "--host", "127.0.0.1", "--port", "9000",
                   "--device", "cuda:1", "--dtype", "bfloat16", "--cache", "--rdt", "0.2", "--Fn", "4", "--Bn", "2",
                   "--max-warmup-steps", "3", "--max-cached-steps", "10", "--max-continuous-cached-steps", "2",
                   "--taylorseer", "--taylorseer-order", "2", "--parallel-type", "ulysses", "--parallel-text-encoder",
                   "--parallel-vae", "--compile", "--quantize-type", "float8_wo", "--pipeline-quant-config-path",
                   "q.json", "--lora-path", "lora/", "--lora-name", "w.safetensors", "--disable-fuse-lora",
                   "--enable-cpu-offload", "--device-map", "balanced")
    assert config.model_path == "black-forest-labs/FLUX.1-dev" and (config.host, config.port) == ("127.0.0.1", 9000)
    assert (config.device, config.dtype) == ("cuda:1", "bfloat16")
    assert (config.cache, config.rdt, config.Fn, config.Bn) == (True, 0.2, 4, 2)
    assert (config.max_warmup_steps, config.max_cached_steps, config.max_continuous_cached_steps) == (3, 10, 2)
    assert (config.taylorseer, config.taylorseer_order) == (True, 2)
    assert (config.parallel_type, config.parallel_text_encoder, config.parallel_vae) == ("ulysses", True, True)
    assert config.compile and config.quantize_type == "float8_wo" and config.pipeline_quant_config_path == "q.json"
    assert (config.lora_path, config.lora_name, config.disable_fuse_lora) == ("lora/", "w.safetensors", True)
    assert config.enable_cpu_offload and config.device_map == "balanced"


def test_defaults_match_the_old_server():
    config = parse()
    assert (config.host, config.port, config.rdt, config.Fn, config.Bn) == ("0.0.0.0", 8000, 0.08, 8, 0)
    assert config.model_path == "tiny:flux"  # the embedded default: no download, no GPU


def test_help_lists_every_old_flag():
    text = _parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for flag in OLD_FLAGS:
        assert flag in text


def test_readme_documents_every_flag_and_every_family():
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    for flag, _, _ in flag_table():
        assert f"`{flag}`" in readme, flag
    done = subprocess.run([sys.executable, str(root / "scripts" / "readme_tables.py")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr  # the generated tables are current


@pytest.mark.parametrize(("argv", "env", "words"), [
    (["--parallel-type", "ulysses"], {}, "torchrun"),
    (["--parallel-vae"], {}, "--parallel-type"),
    ([], {"WORLD_SIZE": "2"}, "torchrun"),
    (["--lora-name", "x.safetensors"], {}, "--lora-path"),
    (["--scm", "fast"], {}, "--cache"),
    (["--taylorseer"], {}, "--cache"),
    (["--allowed-local-media-path", "/nonexistent/dir"], {}, "not a folder"),
    (["--max-queued-requests", "0"], {}, "at least 1"),
    (["--quality-steps", "low=0"], {}, "--quality-steps"),
    (["--quality-steps", "ultra=5"], {}, "--quality-steps"),
    (["--image-url-ttl", "0"], {}, "--image-url-ttl"),
    (["--public-url", "gen.example.com"], {}, "--public-url"),
    (["--max-batch-size", "0"], {}, "--max-batch-size"),
    (["--video-ttl", "0"], {}, "--video-ttl"),
    (["--max-video-jobs", "0"], {}, "--max-video-jobs"),
    (["--data-dir", "/etc/hostname"], {}, "not a folder"),
    (["--parallel-type", "ulysses", "--scm", "fast", "--cache"], {"WORLD_SIZE": "2"}, "--scm"),
    (["--parallel-type", "ulysses", "--step-timeout", "0"], {"WORLD_SIZE": "2"}, "--step-timeout"),
    (["--parallel-type", "ring", "--device", "cpu"], {"WORLD_SIZE": "2"}, "needs CUDA"),
    (["--request-timeout", "-1"], {}, "--request-timeout"),
    (["--shutdown-timeout", "-5"], {}, "--shutdown-timeout"),
    (["--api-key-file", "/nonexistent/keys"], {}, "--api-key-file cannot be read"),
])
def test_bad_launches_are_refused_before_loading(monkeypatch, argv, env, words):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    problem = _check_launch(parse(*argv))
    assert problem and words in problem


def test_sound_launch_passes():
    assert _check_launch(parse("--cache")) is None
    assert _check_launch(parse("--quality-steps", "low=4, high=30", "--public-url", "https://x.example")) is None
    config = parse("--api-key", "k1", "--api-key", "k2", "--request-timeout", "0")
    assert _check_launch(config) is None and config.api_key == ["k1", "k2"]  # 0: no time limit
