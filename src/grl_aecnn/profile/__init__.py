"""Option profiles: every offloading option of one backbone on one test set, per test sample.

The simulator (`grl_aecnn.mec`) reads only this interface; `build_profile` measures it from the
shipped models. This package must not import `grl_aecnn.mec` or `grl_aecnn.policies`.
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
from grl_aecnn.profile.build import (ProfileBuildConfig, build_profile, load_shipped_profile, merge_profiles,
                                     option_name, shipped_profile_path)
from grl_aecnn.profile.synthetic import synthetic_profile

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "OPTION_KINDS", "OptionMeta", "OptionProfile", "ProfileBuildConfig",
           "ProfileError", "build_profile", "load_profile", "load_shipped_profile", "merge_profiles", "option_name", "save_profile",
           "shipped_profile_path", "synthetic_profile"]
