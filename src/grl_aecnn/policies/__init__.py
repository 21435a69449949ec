"""Decision policies over `grl_aecnn.mec` observations."""

from grl_aecnn.policies.base import Policy
from grl_aecnn.policies.heuristics import GreedyPolicy, LocalPolicy, RandomPolicy, make_policy

__all__ = ["GreedyPolicy", "LocalPolicy", "Policy", "RandomPolicy", "make_policy"]
