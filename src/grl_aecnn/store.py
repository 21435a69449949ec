"""Atomic files and checkpoints.

Every write goes to a temporary file in the target folder and is renamed into place, so a crash
never leaves a half-written file. Tensors go to safetensors (no pickle), everything else to JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from grl_aecnn.errors import CheckpointError

# Read once: os.umask can only be read by setting it, which is not thread-safe at write time.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> Path:
    contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    return atomic_write_bytes(path, save_safetensors_bytes(contiguous))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file not found") from exc


def _tensors_from(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    return _tensors_from(_read_bytes(path), path)


def read_verified_bytes(path: str | os.PathLike, sha256: str | None, listed_in: str) -> bytes:
    """The bytes of `path`, which must hash to `sha256` (as recorded in `listed_in`)."""
    path = Path(path)
    data = _read_bytes(path)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"{path}: SHA-256 does not match {listed_in}; the file is corrupt or was replaced")
    return data


def load_verified_tensors(path: str | os.PathLike, sha256: str | None, listed_in: str) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file checked against its recorded SHA-256; read once, so what was
    checked is what loads."""
    path = Path(path)
    return _tensors_from(read_verified_bytes(path, sha256, listed_in), path)


def load_module_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict, naming missing, unexpected and mis-shaped entries on failure."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = sorted(k for k in expected if k in tensors and expected[k].shape != tensors[k].shape)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{source}: does not match {type(module).__name__} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {mismatched[:5]})"
        )
    module.load_state_dict(tensors)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
