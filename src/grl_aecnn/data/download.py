"""Download an archive into the cache, verifying its checksum before it is used."""

from __future__ import annotations

import hashlib
import tempfile
import urllib.request
from pathlib import Path

from grl_aecnn.errors import DatasetCorruptError


def download_verified(url: str, dest: Path, md5: str, timeout_s: float = 60.0) -> Path:
    """Fetch `url` into `dest` atomically; a checksum mismatch leaves nothing behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                while block := response.read(1 << 20):
                    digest.update(block)
                    tmp.write(block)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
    if digest.hexdigest() != md5:
        tmp_path.unlink(missing_ok=True)
        raise DatasetCorruptError(f"{url}: MD5 {digest.hexdigest()} does not match the expected {md5}")
    tmp_path.replace(dest)
    return dest
