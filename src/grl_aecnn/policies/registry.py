"""Every policy by name, behind the one `Policy` interface. Trained agents load their shipped weights
from the zoo (src/grl_aecnn/zoo/weights/<policy>-default.{safetensors,json}, or $GRL_AECNN_ZOO first)."""

from __future__ import annotations

from pathlib import Path

from grl_aecnn.mec.simulator import MecError
from grl_aecnn.zoo import zoo_file, zoo_glob

# Action sets (docs/policies.md): every agent and the like-for-like heuristic choose between local
# inference, sending the input image (INPUT_CODECS: the split at the input) and their codec's levels.
DESCRIPTIONS = {
    "grl": "GRL-AECNN: GCN actor, DROO candidates, planner + learned graph critic (local, input, AECNN levels)",
    "grl-bottlenetpp": "GRL-AECNN's algorithm and recipe trained with BottleNet++ instead of AECNN (local, input, BottleNet++ rates)",
    "grl-deepjscc": "GRL-AECNN's algorithm and recipe trained with DeepJSCC instead of AECNN (local, input, DeepJSCC ratios)",
    "droo": "DROO-AECNN: fully connected network on the flattened state (one network per N), planner as critic",
    "exhaustive": "exhaustive search over joint decisions on the estimated state (small N)",
    "oracle": "exhaustive search on the TRUE state (needs MecSimulator.observe(perfect=True))",
    "full-offload": "every MD offloads its input image with the best input codec (raw/PNG/JPEG)",
    "greedy": "each MD picks its best action as if alone (any option, image codecs included)",
    "greedy-aecnn": "greedy restricted to GRL-AECNN's actions (local, input, AECNN levels): the like-for-like heuristic",
    "local": "everything on the device",
    "random": "uniformly random actions",
}


def default_profile(path: str | Path | None = None):
    """(profile, source): the given profile file, else the shipped real profile
    (zoo/weights/profile-resnet20-cifar10.json) when present, else the SYNTHETIC one."""
    from grl_aecnn.profile import load_profile, shipped_profile_path, synthetic_profile

    shipped = shipped_profile_path()
    if path is None and shipped.exists():
        path = shipped
    if path is None:
        return synthetic_profile(seed=0, n_samples=2000), "synthetic"
    return load_profile(path), str(path)


# the zoo cards each learned policy loads: each GRL variant its own agent, trained on its own action set
# (configs/policies/<name>.yaml); DROO one per N and M
GRL_CARDS = {name: f"{name}-default.json" for name in ("grl", "grl-bottlenetpp", "grl-deepjscc")}
DROO_CARDS = "droo-default*.json"


def _trained_grl(name: str):
    from grl_aecnn.policies.grl import load_agent

    card = zoo_file(GRL_CARDS[name])
    if not card.exists():
        raise MecError(f"{card}: no shipped {name} policy; train one with "
                       f"`grl-aecnn train policy --policy {name}` and `grl-aecnn zoo add`")
    return load_agent(card, name=name)


class PerSizeDroo:
    """DROO-AECNN's network fixes N (and M), so the zoo ships one network per N: `droo-default`
    (the default scenario's N) and `droo-default-n<N>` (`grl-aecnn train policy --policy droo --n-md N`).
    Each slot is decided by the network trained for its N, loaded on first use."""

    name = "droo"

    def __init__(self, zoo: Path | None = None):
        from grl_aecnn.store import read_json

        self.cards = {}
        for card in zoo_glob(DROO_CARDS, zoo):
            shape = read_json(card)["shape"]
            self.cards[(shape["n_md"], shape["n_es"])] = card
        self.agents: dict = {}
        self.seed = 0

    def reset(self, seed: int) -> None:
        self.seed = seed
        for agent in self.agents.values():
            agent.reset(seed)

    def act(self, observation):
        from grl_aecnn.policies.grl import load_agent

        size = (observation.n_md, observation.n_es)
        if size not in self.agents:
            if size not in self.cards:
                raise MecError(f"no shipped DROO-AECNN network for N={size[0]}, M={size[1]} (shipped: {sorted(self.cards)}); "
                               f"train one with `grl-aecnn train policy --policy droo --n-md {size[0]}` and `grl-aecnn zoo add`")
            self.agents[size] = load_agent(self.cards[size], name="droo")
            self.agents[size].reset(self.seed)
        return self.agents[size].act(observation)


def _build(name: str):
    from grl_aecnn.policies import heuristics, search

    factories = {
        **{grl: (lambda grl=grl: _trained_grl(grl)) for grl in GRL_CARDS},
        "droo": PerSizeDroo,
        "exhaustive": search.ExhaustiveSearch,
        "oracle": search.PerfectInformationOracle,
        "full-offload": heuristics.FullOffloadPolicy,
        "greedy": heuristics.GreedyPolicy,
        "greedy-aecnn": lambda: heuristics.GreedyPolicy(options=("aecnn:", *heuristics.INPUT_CODECS)),
        "local": heuristics.LocalPolicy,
        "random": heuristics.RandomPolicy,
    }
    return factories[name]()


def weights_id(name: str, n_md: int | None = None, n_es: int | None = None) -> str:
    """The SHA-256 of the shipped weights a policy loads ("" for the heuristics and searches), with a
    hash of the card's config where it has one (load_agent builds the agent from it: anchor, K,
    options, ...), so that results computed with other weights or settings are recognised as stale.
    DROO loads one network per (N, M): given the size, only that network counts (adding a network for
    another size leaves these results valid)."""
    import hashlib
    import json

    from grl_aecnn.store import read_json

    def identity(card: dict) -> str:
        if "config" not in card:
            return card["weights_sha256"]
        config = json.dumps(card["config"], sort_keys=True).encode()
        return f"{card['weights_sha256']}+{hashlib.sha256(config).hexdigest()[:16]}"

    pattern = DROO_CARDS if name == "droo" else GRL_CARDS.get(name)
    if pattern is None:
        return ""
    cards = [read_json(card) for card in zoo_glob(pattern)]
    if name == "droo" and n_md is not None:
        cards = [c for c in cards if (c["shape"]["n_md"], c["shape"]["n_es"]) == (n_md, n_es)]
    return ",".join(identity(card) for card in cards)


def make_policy(name: str, seed: int = 0):
    if name not in DESCRIPTIONS:
        raise MecError(f"unknown policy {name!r}; choose from {sorted(DESCRIPTIONS)}")
    policy = _build(name)
    policy.reset(seed)
    return policy
