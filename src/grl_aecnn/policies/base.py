"""The policy interface: one action per MD each slot (0 = local, then (ES, option) pairs)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from grl_aecnn.mec.simulator import Observation


@runtime_checkable
class Policy(Protocol):
    name: str

    def reset(self, seed: int) -> None: ...

    def act(self, observation: Observation) -> np.ndarray: ...
