"""Option profiles: every offloading option of one backbone on one test set, per test sample.

The simulator (`grl_aecnn.mec`) reads only this interface; the builder from trained codecs comes
later. This package must not import `grl_aecnn.mec` or `grl_aecnn.policies`.
"""

from grl_aecnn.profile.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    OPTION_KINDS,
    OptionMeta,
    OptionProfile,
    ProfileError,
    load_profile,
    save_profile,
)
from grl_aecnn.profile.synthetic import synthetic_profile

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "OPTION_KINDS", "OptionMeta", "OptionProfile", "ProfileError",
           "load_profile", "save_profile", "synthetic_profile"]
