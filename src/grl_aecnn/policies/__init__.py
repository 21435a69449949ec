"""Decision policies over `grl_aecnn.mec` observations (docs/policies.md)."""

from grl_aecnn.policies.base import Policy
from grl_aecnn.policies.heuristics import FullOffloadPolicy, GreedyPolicy, LocalPolicy, RandomPolicy
from grl_aecnn.policies.registry import DESCRIPTIONS, make_policy

__all__ = ["DESCRIPTIONS", "FullOffloadPolicy", "GreedyPolicy", "LocalPolicy", "Policy", "RandomPolicy", "make_policy"]
