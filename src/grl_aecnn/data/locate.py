"""Where datasets are looked for: $GRL_AECNN_DATA first, then the per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "GRL_AECNN_DATA"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grl-aecnn" / "datasets"


def data_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched in order: an explicit root, $GRL_AECNN_DATA, the user cache."""
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root))
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    roots.append(user_cache_dir())
    unique: list[Path] = []
    for candidate in roots:
        if candidate not in unique:
            unique.append(candidate)
    return unique
