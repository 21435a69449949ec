"""Exhaustive search over joint decisions on the planner's objective (`policies/planner.py`), and the
perfect-information oracle: the same search on the TRUE channel gains and ES availability.

Exhaustive search sees what every other policy sees (estimates), so it bounds what a learned policy
can reach on the planner's objective; the oracle additionally knows the truth (it must be given
`MecSimulator.observe(perfect=True)`). The oracle is no upper bound on realised reward: the ES's
allocator still works on estimates and a task's real payload differs from the option's mean
(docs/policies.md).
The joint action space is A^(tasks), so both are for small instances only.
"""

from __future__ import annotations

import numpy as np

from grl_aecnn.mec.simulator import MecError, Observation
from grl_aecnn.policies.heuristics import INPUT_CODECS
from grl_aecnn.policies.planner import Plan, allowed_options


class ExhaustiveSearch:
    name = "exhaustive"
    perfect_information = False  # the runner passes observe(perfect=True) when this is True

    def __init__(self, options: tuple[str, ...] | None = ("aecnn:", *INPUT_CODECS), max_joint: int = 200_000,
                 chunk: int = 4096):
        self.options, self.max_joint, self.chunk = options, max_joint, chunk

    def reset(self, seed: int) -> None:
        pass  # deterministic

    def act(self, obs: Observation) -> np.ndarray:
        """Exact on the planner's objective, which is a sum over ESs (tasks interact only through
        their ES): for each ES m and each set S of tasks it serves, the best options for S
        ((1+K)^T joint actions per ES); then the best split of the tasks between local and the ESs
        ((1+M)^T splits). That is M (1+K)^T + (1+M)^T evaluations instead of (1+M K)^T."""
        if obs.perfect != self.perfect_information:
            raise MecError(f"{self.name} needs MecSimulator.observe(perfect={self.perfect_information})")
        plan = Plan(obs, allowed_options(obs, self.options))
        tasks = np.flatnonzero(obs.has_task)
        t, k, m = len(tasks), plan.k, plan.n_es
        work = m * (1 + k) ** t + (1 + m) ** t
        if work > self.max_joint:
            raise MecError(f"{self.name}: {work:,} evaluations for {t} tasks, {m} ESs and {k} options exceed "
                           f"max_joint={self.max_joint:,}; use fewer MDs or options")
        bit = 1 << np.arange(t)
        best_value = np.zeros((m, 1 << t))
        best_action = np.zeros((m, 1 << t, obs.n_md), np.int64)
        for es in range(m):
            digits = _digits((1 + k) ** t, 1 + k, t)  # 0 = local, q + 1 = option q on this ES
            cand = np.zeros((len(digits), obs.n_md), np.int64)
            cand[:, tasks] = np.where(digits > 0, 1 + es * k + digits - 1, 0)
            values = np.concatenate([plan.evaluate(cand[i:i + self.chunk]).value for i in range(0, len(cand), self.chunk)])
            on_es = (digits > 0) @ bit
            gain = np.where(cand[:, tasks] > 0, values[:, tasks], 0.0).sum(axis=1)
            order = np.lexsort((-gain, on_es))  # per set: the best first (ties: the earliest)
            first = order[np.r_[True, on_es[order][1:] != on_es[order][:-1]]]
            best_value[es, on_es[first]] = gain[first]
            best_action[es, on_es[first]] = cand[first]
        split = _digits((1 + m) ** t, 1 + m, t)  # 0 = local, e + 1 = ES e
        total = np.where(split == 0, plan.local_value[tasks], 0.0).sum(axis=1)
        sets = [(split == es + 1) @ bit for es in range(m)]
        for es in range(m):
            total = total + best_value[es, sets[es]]
        pick = int(np.argmax(total))
        actions = sum(best_action[es, sets[es][pick]] for es in range(m))
        return plan.sim_action[actions]


def _digits(count: int, base: int, width: int) -> np.ndarray:
    """(count, width): the base-`base` digits of 0..count-1, most significant first."""
    return (np.arange(count)[:, None] // base ** np.arange(width)[::-1][None, :]) % base


class PerfectInformationOracle(ExhaustiveSearch):
    name = "oracle"
    perfect_information = True
