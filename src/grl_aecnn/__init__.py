"""GRL-AECNN: dynamic semantic compression for CNN inference in multi-access edge computing."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grl-aecnn")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
