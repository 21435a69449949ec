"""Dynamic MEC simulator (docs/system-model.md). Imports only `grl_aecnn.profile` below it."""

from grl_aecnn.mec.allocation import Allocation, EsResources, EsTasks, equal_shares, evaluate, solve
from grl_aecnn.mec.scenario import Scenario
from grl_aecnn.mec.simulator import MecBatch, MecError, MecSimulator, Observation

__all__ = ["Allocation", "EsResources", "EsTasks", "MecBatch", "MecError", "MecSimulator", "Observation", "Scenario",
           "equal_shares", "evaluate", "solve"]
