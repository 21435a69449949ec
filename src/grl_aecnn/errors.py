"""Typed errors: every bad input is reported as one of these, naming the problem."""


class GrlAecnnError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(GrlAecnnError):
    """A YAML config is missing, malformed or fails validation."""


class SplitPointError(ConfigError):
    """A split point that the backbone does not have."""


class DatasetNotFoundError(GrlAecnnError):
    """No copy of a dataset was found in any of the places searched."""


class DatasetCorruptError(GrlAecnnError):
    """A dataset archive exists but cannot be read or fails its checksum."""


class CheckpointError(GrlAecnnError):
    """A checkpoint or shipped weight file is missing, malformed or does not match its model."""


class ModelNotFoundError(GrlAecnnError):
    """A model name is not in the registry or the zoo."""


class BitstreamError(GrlAecnnError):
    """A bitstream is truncated, corrupted, of another codec or format version, or otherwise undecodable."""
