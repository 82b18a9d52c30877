"""The CLI: every flag (the old server's included) parses into the config; bad launches are refused early."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from unittest import mock

import pytest

from openai_dit.cli import _check_launch, _parser
from openai_dit.config import API_KEY_ENV, ServerConfig, add_arguments, config_from_args, flag_table

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


@pytest.mark.slow  # reads every built-in tiny model (built on first use)
def test_readme_documents_every_flag_and_every_family():
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    for flag, _, _ in flag_table():
        assert f"`{flag}`" in readme, flag
    spec = importlib.util.spec_from_file_location("readme_tables", root / "scripts" / "readme_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    assert tables.rendered(readme) == readme, "README tables out of date: python scripts/readme_tables.py --write"


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


def serve_config(argv: list[str], environ: dict[str, str]) -> ServerConfig:
    """`openai-dit serve ARGV` as the CLI parses it, with exactly these variables set."""
    with mock.patch.dict(os.environ, environ, clear=True):
        return config_from_args(_parser().parse_args(["serve", *argv]))


def test_flags_beat_variables_which_beat_the_file_which_beats_the_defaults(tmp_path):
    file = tmp_path / "openai-dit.yaml"
    file.write_text("port: 9100\nhost: 127.0.0.1\nserved_model_name: [flux, dall-e-3]\ncache: true\nFn: 4\n"
                    "max-batch-size: 2\nallowed-origins: ['https://a.example']\n")
    from_file = serve_config(["--config", str(file)], {})
    assert (from_file.port, from_file.host, from_file.served_model_name) == (9100, "127.0.0.1", ["flux", "dall-e-3"])
    assert (from_file.cache, from_file.Fn, from_file.max_batch_size) == (True, 4, 2)
    assert from_file.rdt == 0.08  # not in the file: the default
    env = {"OPENAI_DIT_PORT": "9200", "OPENAI_DIT_MODEL_PATH": "tiny:wan-t2v", "OPENAI_DIT_SERVED_MODEL_NAME": "a b",
           "OPENAI_DIT_CACHE": "false", "OPENAI_DIT_LOG_PROBES": "yes", "OPENAI_DIT_FN": "2"}
    from_env = serve_config(["--config", str(file)], env)
    assert (from_env.port, from_env.model_path, from_env.served_model_name) == (9200, "tiny:wan-t2v", ["a", "b"])
    assert (from_env.cache, from_env.log_probes, from_env.Fn, from_env.host) == (False, True, 2, "127.0.0.1")
    flags = serve_config(["--config", str(file), "--port", "9300", "--served-model-name", "z", "--Fn", "1"], env)
    assert (flags.port, flags.served_model_name, flags.Fn, flags.model_path) == (9300, ["z"], 1, "tiny:wan-t2v")
    assert serve_config([], {"OPENAI_DIT_CACHE": "true"}).cache
    assert serve_config([], {}).port == 8000


def test_a_folder_in_the_old_tiny_cache_variable_is_not_read_as_cache(tmp_path):
    assert not serve_config([], {"OPENAI_DIT_CACHE": str(tmp_path)}).cache


def test_api_keys_from_the_variable_are_added_to_the_flags():
    config = serve_config(["--api-key", "flag-key"], {API_KEY_ENV: "env-1,env-2"})
    with mock.patch.dict(os.environ, {API_KEY_ENV: "env-1,env-2"}):
        assert config.api_keys() == ["flag-key", "env-1", "env-2"]


@pytest.mark.parametrize(("text", "words"), [
    ("bogus: 1\n", "unknown key 'bogus'"),
    ("port: 8000\nmodel_pth: x\n", "unknown key 'model_pth'"),
    ("port: abc\n", "--port: invalid int value"),
    ("- port\n", "YAML mapping"),
    ("dtype: float64\n", "invalid choice"),
])
def test_a_bad_config_file_is_refused_naming_the_key(tmp_path, capsys, text, words):
    file = tmp_path / "c.yaml"
    file.write_text(text)
    with pytest.raises(SystemExit) as stopped:
        serve_config(["--config", str(file)], {})
    assert stopped.value.code == 2 and words in capsys.readouterr().err


def test_help_names_the_variables_and_the_file():
    text = " ".join(_parser()._subparsers._group_actions[0].choices["serve"].format_help().split())
    assert "--config" in text and "[env var: OPENAI_DIT_MODEL_PATH]" in text and "[env var: OPENAI_DIT_FN]" in text
    assert "flag > variable > file > default" in text
