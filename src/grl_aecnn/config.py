"""Declarative YAML configs validated with pydantic on load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from grl_aecnn.errors import ConfigError


class StrictModel(BaseModel):
    """Base of every config: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ConfigT = TypeVar("ConfigT", bound=BaseModel)

# The checkout this package runs from (editable install): its configs/ serve when a relative config
# path is not found under the working directory, so commands work from any folder.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def find_config(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_absolute() or path.exists() or not (PROJECT_ROOT / path).exists():
        return path
    return PROJECT_ROOT / path


def load_config(path: str | os.PathLike, schema: type[ConfigT]) -> ConfigT:
    path = find_config(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: invalid {schema.__name__}: {problems}") from exc


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
