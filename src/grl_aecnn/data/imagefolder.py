"""ImageFolder layout (`<class name>/<file>`), from a zip archive or a directory.

Class index = position of the class name in sorted order; samples are ordered by (class, file name)
so that every reader gives the same order for the same files.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from grl_aecnn.errors import DatasetCorruptError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _decode(data: bytes, where: str, mode: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetCorruptError(f"{where}: cannot decode image ({exc})") from exc


def _assemble(
    members: Iterable[tuple[str, str]], read: Callable[[str, str], bytes], where: str, mode: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    entries = sorted(members)
    if not entries:
        raise DatasetCorruptError(f"{where}: no images in ImageFolder layout (<class>/<file>)")
    classes = tuple(sorted({cls for cls, _ in entries}))
    index = {cls: i for i, cls in enumerate(classes)}
    images, labels = [], []
    shape = None
    for cls, name in entries:
        pixels = _decode(read(cls, name), f"{where}:{cls}/{name}", mode)
        if shape is None:
            shape = pixels.shape
        elif pixels.shape != shape:
            raise DatasetCorruptError(f"{where}:{cls}/{name}: shape {pixels.shape}, expected {shape}")
        images.append(pixels)
        labels.append(index[cls])
    stacked = np.stack(images)
    if stacked.ndim == 3:
        stacked = stacked[..., None]
    return stacked, np.asarray(labels, dtype=np.int64), classes


def _split_member(name: str) -> tuple[str, str] | None:
    parts = name.split("/")
    if len(parts) != 2 or not parts[1] or not parts[1].lower().endswith(IMAGE_SUFFIXES):
        return None
    return parts[0], parts[1]


def read_imagefolder_zip(path: Path, mode: str = "RGB") -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetCorruptError(f"{path}: not a readable zip archive ({exc})") from exc
    with archive:
        members = [m for m in map(_split_member, archive.namelist()) if m is not None]

        def read(cls: str, name: str) -> bytes:
            try:
                return archive.read(f"{cls}/{name}")
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise DatasetCorruptError(f"{path}:{cls}/{name}: damaged archive member ({exc})") from exc

        return _assemble(members, read, str(path), mode)


def _walk_dir(path: Path) -> Iterator[tuple[str, str]]:
    for class_dir in path.iterdir():
        if class_dir.is_dir():
            for file in class_dir.iterdir():
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                    yield class_dir.name, file.name


def read_imagefolder_dir(path: Path, mode: str = "RGB") -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    return _assemble(_walk_dir(path), lambda cls, name: (path / cls / name).read_bytes(), str(path), mode)
