"""Where `openai-dit serve` reads its settings: flags, `OPENAI_DIT_<FLAG>` variables and a YAML file (`--config`),
in that order of precedence, then the defaults. ConfigArgParse does the layering; this module says which variable
and which key belong to which flag, and refuses a file key that is no flag.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any

import configargparse  # type: ignore[import-untyped]

from .config import API_KEY_ENV, BOOLEAN_WORDS

__all__ = ["ENV_PREFIX", "TINY_CACHE_ENV", "ServeParser", "env_name", "server_environment"]

ENV_PREFIX = "OPENAI_DIT_"
# Where the built-in tiny models are written. `OPENAI_DIT_CACHE` once named it, before it became --cache's
# variable: a value that is no boolean still means that folder (see `server_environment`).
TINY_CACHE_ENV = "OPENAI_DIT_TINY_CACHE"


def env_name(flag: str) -> str:
    """The variable of a flag, as ConfigArgParse names it: --model-path -> OPENAI_DIT_MODEL_PATH."""
    return (ENV_PREFIX + flag.lstrip("-")).replace("-", "_").upper()


def server_environment(environ: Mapping[str, str], parser: argparse.ArgumentParser) -> dict[str, str]:
    """The variables ConfigArgParse should read, in the forms it reads: a list flag's value split on white space
    (or written as a JSON list); $OPENAI_DIT_API_KEY left out (its comma-separated keys are added to the others by
    `ServerConfig.api_keys`); $OPENAI_DIT_CACHE only when it is a boolean (else it is the old tiny-model folder)."""
    lists = {env_name(option) for a in parser._actions for option in a.option_strings[-1:]
             if a.nargs in ("+", "*") or isinstance(a, argparse._AppendAction)}
    view = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == API_KEY_ENV:
            continue
        if name == f"{ENV_PREFIX}CACHE" and value.strip().lower() not in BOOLEAN_WORDS:
            continue
        if name in lists and not value.strip().startswith("["):
            value = json.dumps(value.split())
        view[name] = value
    return view


class _KeyCheckedYAML(configargparse.YAMLConfigFileParser):
    """YAML whose keys are the flags' names, with `-` or `_` (`model-path:` or `model_path:`); an unknown key is an
    error naming it, not a value silently dropped."""

    known: frozenset[str] = frozenset()

    def parse(self, stream) -> dict[str, Any]:
        items = super().parse(stream)
        source = getattr(stream, "name", "the config file")
        parsed = {}
        for key, value in items.items():
            name = str(key).strip().lstrip("-").replace("_", "-")
            if name not in self.known:
                raise configargparse.ConfigFileParserException(
                    f"{source}: unknown key '{key}': not a setting of openai-dit serve (see openai-dit serve --help)")
            parsed[name] = value
        return parsed


class ServeParser(configargparse.ArgumentParser):
    """The `serve` command's parser: argparse's flags, plus their variables and the `--config` file."""

    def __init__(self, **kwargs: Any) -> None:
        yaml_parser: type[_KeyCheckedYAML] = type("ServeConfigYAML", (_KeyCheckedYAML,), {})
        super().__init__(auto_env_var_prefix=ENV_PREFIX, config_file_parser_class=yaml_parser,
                         args_for_setting_config_path=["--config"], config_arg_is_required=False,
                         config_arg_help_message="A YAML file of settings, one key per flag (e.g. `port: 8000`, "
                         "`served-model-name: [flux, dall-e-3]`); precedence: flag > OPENAI_DIT_<FLAG> variable > "
                         "this file > default.", **kwargs)
        self._yaml_parser = yaml_parser

    def _name_variables(self) -> None:
        """Each flag's variable named up front (as ConfigArgParse would at parse time), so that help shows it."""
        for action in self._actions:
            longs = [option for option in action.option_strings if option.startswith("--")]
            if longs and longs[-1] not in ("--config", "--help") and not getattr(action, "env_var", None):
                action.env_var = env_name(longs[-1])

    def format_help(self) -> str:
        self._name_variables()
        return super().format_help()

    def parse_known_args(self, args=None, namespace=None, config_file_contents=None, env_vars=None,
                         **kwargs: Any):
        self._name_variables()
        self._yaml_parser.known = frozenset(key.lstrip("-") for action in self._actions
                                            for key in action.option_strings if key.startswith("--"))
        environ = server_environment(os.environ if env_vars is None else env_vars, self)
        return super().parse_known_args(args, namespace, config_file_contents=config_file_contents,
                                        env_vars=environ, **kwargs)
