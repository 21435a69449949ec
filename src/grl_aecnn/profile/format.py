"""The on-disk option profile: one `.npz` of per-sample arrays plus a JSON metadata file.

JSON (`<name>.json`, the commit point, written last)::

    {"format": "grl-aecnn-option-profile", "format_version": 1, "model": "...", "dataset": "...",
     "dataset_checksum": "<sha256 hex>", "n_samples": S, "synthetic": false,
     "options": [{"name": "local", "kind": "local", "device_flops": ..., "server_flops": ...,
                  "device_latency_ms": ..., "server_latency_ms": ...}, ...],
     "npz": "<name>.npz", "npz_sha256": "<sha256 of the npz file>"}

NPZ (no pickles):

* ``payload``      int64 (n_options, S): bytes ("bytes"), channel symbols ("symbols"), 0 ("local");
* ``correct``      bool  (n_options, S): top-1 correctness; for "symbols" options the noiseless
  (or best-SNR) correctness, the simulator uses ``snr_correct`` instead;
* ``snr_grid_db``  float64 (n_snr,): strictly increasing SNR grid (empty when no symbols option);
* ``snr_correct``  bool (n_symbols_options, n_snr, S): correctness per SNR grid point, one block per
  "symbols" option in option order.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grl_aecnn.errors import GrlAecnnError
from grl_aecnn.store import atomic_write_bytes, atomic_write_json

FORMAT_NAME = "grl-aecnn-option-profile"
FORMAT_VERSION = 1
OPTION_KINDS = ("local", "bytes", "symbols")
_NPZ_KEYS = {"payload", "correct", "snr_grid_db", "snr_correct"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ProfileError(GrlAecnnError):
    """An option profile is missing, corrupted, inconsistent, of another version or of another model."""


@dataclass(frozen=True)
class OptionMeta:
    name: str  # "local", "aecnn:L6", "jpeg:q50", "deepjscc:k64"
    kind: str  # "local" | "bytes" | "symbols"
    device_flops: float  # FLOPs run on the mobile device per sample (backbone head + encoder)
    server_flops: float  # FLOPs run on the edge server per sample (decoder + backbone tail)
    device_latency_ms: float  # measured on CPU, batch size 1 (metadata; the simulator uses FLOPs)
    server_latency_ms: float

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "device_flops": float(self.device_flops),
                "server_flops": float(self.server_flops), "device_latency_ms": float(self.device_latency_ms),
                "server_latency_ms": float(self.server_latency_ms)}


@dataclass(frozen=True, eq=False)
class OptionProfile:
    model: str
    dataset: str
    dataset_checksum: str
    options: tuple[OptionMeta, ...]
    payload: np.ndarray  # int64 (n_options, n_samples)
    correct: np.ndarray  # bool (n_options, n_samples)
    snr_grid_db: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_snr,)
    snr_correct: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), bool))  # (n_sym, n_snr, S)
    synthetic: bool = False
    provenance: dict = field(default_factory=dict)  # how it was built: config, versions, model checksums

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        object.__setattr__(self, "payload", np.asarray(self.payload))
        object.__setattr__(self, "correct", np.asarray(self.correct))
        object.__setattr__(self, "snr_grid_db", np.asarray(self.snr_grid_db, dtype=np.float64))
        object.__setattr__(self, "snr_correct", np.asarray(self.snr_correct))
        self.validate()

    # ---- shape facts ---------------------------------------------------------------------------
    @property
    def n_options(self) -> int:
        return len(self.options)

    @property
    def n_samples(self) -> int:
        return int(self.payload.shape[1])

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.options]

    @property
    def kinds(self) -> np.ndarray:
        return np.array([o.kind for o in self.options])

    @property
    def local_index(self) -> int:
        return next(i for i, o in enumerate(self.options) if o.kind == "local")

    @property
    def offload_indices(self) -> np.ndarray:
        """Profile indices of the options that send something to an edge server, in order."""
        return np.array([i for i, o in enumerate(self.options) if o.kind != "local"], dtype=np.int64)

    def symbols_row(self, option: int) -> int:
        """Row of `snr_correct` that belongs to a "symbols" option."""
        if self.options[option].kind != "symbols":
            raise ProfileError(f"option {self.options[option].name!r} is not a symbols option")
        return sum(1 for o in self.options[:option] if o.kind == "symbols")

    def accuracy(self) -> np.ndarray:
        """Mean correctness per option (for symbols options: at the best SNR grid point)."""
        return self.correct.mean(axis=1)

    def snr_accuracy(self) -> np.ndarray:
        """(n_symbols_options, n_snr) mean correctness per SNR grid point."""
        return self.snr_correct.mean(axis=2) if self.snr_correct.size else np.zeros((0, len(self.snr_grid_db)))

    # ---- validation ----------------------------------------------------------------------------
    def validate(self) -> None:
        opts = self.options
        if not opts:
            raise ProfileError("profile has no options")
        names = [o.name for o in opts]
        if len(set(names)) != len(names):
            raise ProfileError(f"duplicate option names: {names}")
        for o in opts:
            if o.kind not in OPTION_KINDS:
                raise ProfileError(f"option {o.name!r}: kind {o.kind!r} not one of {OPTION_KINDS}")
            for attr in ("device_flops", "server_flops", "device_latency_ms", "server_latency_ms"):
                value = getattr(o, attr)
                if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                    raise ProfileError(f"option {o.name!r}: {attr} must be a finite number >= 0, got {value!r}")
        if sum(o.kind == "local" for o in opts) != 1:
            raise ProfileError("profile needs exactly one 'local' option")
        if not _HEX64.match(self.dataset_checksum):
            raise ProfileError(f"dataset_checksum must be 64 lowercase hex digits, got {self.dataset_checksum!r}")
        p, c = self.payload, self.correct
        if p.ndim != 2 or p.shape[0] != len(opts) or p.shape[1] < 1:
            raise ProfileError(f"payload shape {p.shape} does not match {len(opts)} options x n_samples")
        if not np.issubdtype(p.dtype, np.integer):
            raise ProfileError(f"payload dtype {p.dtype} is not an integer type")
        if c.shape != p.shape or c.dtype != np.bool_:
            raise ProfileError(f"correct must be bool {p.shape}, got {c.dtype} {c.shape}")
        kinds = self.kinds
        if np.any(p[kinds == "local"] != 0):
            raise ProfileError("the local option must have payload 0")
        if np.any(p[kinds != "local"] <= 0):
            raise ProfileError("offloading options need a positive payload for every sample")
        n_sym = int(np.sum(kinds == "symbols"))
        g, sc = self.snr_grid_db, self.snr_correct
        if g.ndim != 1 or not np.all(np.isfinite(g)) or np.any(np.diff(g) <= 0):
            raise ProfileError("snr_grid_db must be a 1-D strictly increasing finite grid")
        if n_sym and len(g) == 0:
            raise ProfileError("symbols options need a non-empty snr_grid_db")
        expected = (n_sym, len(g), p.shape[1])
        if n_sym == 0:
            if sc.size != 0:
                raise ProfileError("snr_correct given but there is no symbols option")
        elif sc.shape != expected or sc.dtype != np.bool_:
            raise ProfileError(f"snr_correct must be bool {expected}, got {sc.dtype} {sc.shape}")

    def metadata(self, npz_name: str, npz_sha256: str) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": self.model,
                "dataset": self.dataset, "dataset_checksum": self.dataset_checksum, "n_samples": self.n_samples,
                "synthetic": self.synthetic, "options": [o.to_json() for o in self.options],
                "provenance": self.provenance, "npz": npz_name, "npz_sha256": npz_sha256}


def _npz_bytes(profile: OptionProfile) -> bytes:
    buf = io.BytesIO()
    n_sym = int(np.sum(profile.kinds == "symbols"))
    snr_correct = profile.snr_correct if n_sym else np.zeros((0, len(profile.snr_grid_db), profile.n_samples), bool)
    np.savez(buf, payload=profile.payload.astype(np.int64), correct=profile.correct.astype(bool),
             snr_grid_db=profile.snr_grid_db.astype(np.float64), snr_correct=snr_correct.astype(bool))
    return buf.getvalue()


def _json_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "profile.json"
    return path if path.suffix == ".json" else path.with_suffix(".json")


def save_profile(profile: OptionProfile, path: str | os.PathLike) -> Path:
    """Write `<path>.npz` then `<path>.json` (the commit point), both atomically. Returns the JSON path."""
    json_path = _json_path(path)
    npz_path = json_path.with_suffix(".npz")
    data = _npz_bytes(profile)
    atomic_write_bytes(npz_path, data)
    atomic_write_json(json_path, profile.metadata(npz_path.name, hashlib.sha256(data).hexdigest()))
    return json_path


def load_profile(path: str | os.PathLike, expected_model: str | None = None,
                 expected_dataset_checksum: str | None = None) -> OptionProfile:
    """Load and validate a profile; every problem raises `ProfileError` naming the file."""
    json_path = _json_path(path)
    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError as exc:
        raise ProfileError(f"{json_path}: profile metadata not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{json_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ProfileError(f"{json_path}: not an option profile (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ProfileError(f"{json_path}: format version {meta.get('format_version')!r}, this package reads {FORMAT_VERSION}")
    required = {"model", "dataset", "dataset_checksum", "n_samples", "options", "npz", "npz_sha256"}
    if missing := sorted(required - set(meta)):
        raise ProfileError(f"{json_path}: metadata lacks {missing}")
    if expected_model is not None and meta["model"] != expected_model:
        raise ProfileError(f"{json_path}: profile is of model {meta['model']!r}, expected {expected_model!r}")
    if expected_dataset_checksum is not None and meta["dataset_checksum"] != expected_dataset_checksum:
        raise ProfileError(f"{json_path}: profile is of dataset checksum {meta['dataset_checksum']}, "
                           f"expected {expected_dataset_checksum}")
    npz_path = json_path.parent / str(meta["npz"])
    if Path(str(meta["npz"])).name != str(meta["npz"]):
        raise ProfileError(f"{json_path}: npz must name a file beside the JSON, got {meta['npz']!r}")
    try:
        data = npz_path.read_bytes()
    except FileNotFoundError as exc:
        raise ProfileError(f"{npz_path}: profile arrays not found") from exc
    if hashlib.sha256(data).hexdigest() != meta["npz_sha256"]:
        raise ProfileError(f"{npz_path}: SHA-256 does not match the metadata (file changed or corrupted)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if set(npz.files) != _NPZ_KEYS:
                raise ProfileError(f"{npz_path}: arrays {sorted(npz.files)}, expected {sorted(_NPZ_KEYS)}")
            arrays = {k: npz[k] for k in _NPZ_KEYS}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ProfileError(f"{npz_path}: not a readable npz ({exc})") from exc
    try:
        options = tuple(OptionMeta(**o) for o in meta["options"])
    except TypeError as exc:
        raise ProfileError(f"{json_path}: malformed option entry ({exc})") from exc
    try:
        profile = OptionProfile(model=str(meta["model"]), dataset=str(meta["dataset"]),
                                dataset_checksum=str(meta["dataset_checksum"]), options=options,
                                payload=arrays["payload"], correct=arrays["correct"],
                                snr_grid_db=arrays["snr_grid_db"], snr_correct=arrays["snr_correct"],
                                synthetic=bool(meta.get("synthetic", False)),
                                provenance=meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {})
    except ProfileError as exc:
        raise ProfileError(f"{json_path}: {exc}") from exc
    if profile.n_samples != meta["n_samples"]:
        raise ProfileError(f"{json_path}: metadata says {meta['n_samples']} samples, arrays hold {profile.n_samples}")
    return profile
