"""GRL-AECNN: a graph reinforcement-learning agent that decides, every slot, where each mobile
device's (MD) task runs and at which compression level (Li, Iosifidis, Zhang, arXiv 2401.12167).

Read top to bottom:

1. `AgentConfig`: the training config (pydantic YAML, configs/policies/grl.yaml and droo.yaml).
2. `slot_graph`: the MEC graph of a slot, MD and ES nodes, MD-ES edges with estimated channel gains,
   plus per-action features computed by the planner (stand-alone feasibility, footprint, accuracy).
3. `GraphActor`: a GCN whose heads score, per MD, {local} and every (ES m, option o) edge-option
   pair. Nothing in it depends on N, M or the option set, so one trained actor runs at any size.
4. `GraphCritic`: a learned graph critic of the REALIZED per-task reward, as a residual on top of
   the planner's expected reward, so the agent learns which plans fail under CSI error and ES
   uncertainty and keeps a margin.
5. `candidates`: DROO's order-preserving quantisation for categorical choices.
6. `Agent`: decide (actor -> K candidates -> planner + critic -> best), remember (graph, best
   action) and learn (cross-entropy of the actor to the best action, as DROO; MSE of the critic),
   with DROO's adaptive K. The same loop drives DROO-AECNN (`policies/droo.py`), which only swaps in
   a fully connected network on the flattened state and uses the planner alone as critic.
7. `train_agent`: episodes of the simulator with checkpoints (safetensors + JSON) and resume;
   `save_agent` / `load_agent` for the zoo.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal, Optional

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn
from torch_geometric.nn import GCNConv

from grl_aecnn.config import StrictModel
from grl_aecnn.errors import CheckpointError
from grl_aecnn.mec.env import node_features, pair_features
from grl_aecnn.mec.scenario import Scenario
from grl_aecnn.mec.simulator import MecSimulator, Observation
from grl_aecnn.policies.heuristics import INPUT_CODECS
from grl_aecnn.policies.planner import ACTION_FEATURES, Plan, allowed_among, allowed_options
from grl_aecnn.profile import OptionProfile
from grl_aecnn.store import (atomic_write_json, load_module_state, load_tensors, load_verified_tensors, read_json,
                             save_tensors, sha256_file)

NODE_FEATURES, EDGE_FEATURES = 6, 2  # as `mec.env.observation_graph`


# ---- 1. config -------------------------------------------------------------------------------------
class AgentConfig(StrictModel):
    policy: Literal["grl", "droo"] = "grl"
    # what the trained agent is called (its zoo card: NAME-SCENARIO; None: the policy), so agents of one
    # algorithm trained on different action sets (GRL-AECNN, GRL-BottleNet++, GRL-DeepJSCC) ship side by side
    name: Optional[str] = Field(None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    # option-name prefixes the agent may choose (null: all; local always): AECNN levels and sending the
    # input image itself (the split at the input), as every agent and heuristic here (docs/policies.md)
    options: Optional[tuple[str, ...]] = ("aecnn:", *INPUT_CODECS)
    # fraction of each ES's bandwidth and compute the planner keeps free when it admits tasks: a margin
    # against CSI error and ES load changes (the ES's allocator spreads it over the admitted tasks)
    headroom: float = Field(0.0, ge=0.0, lt=1.0)
    hidden: int = Field(64, ge=4)  # GRL: GCN width; DROO: first hidden layer (second is hidden * 2/3)
    layers: int = Field(2, ge=1)  # GCN layers
    critic: bool = True  # learned graph critic on top of the planner (GRL only)
    critic_hidden: int = Field(32, ge=4)
    # also score the planner's stand-alone best action of every MD (the untrained actor's first candidate,
    # greedy's choice) as one more candidate each slot, so an actor that drifts in self-training cannot
    # lose it (GRL only; False in the cards of agents trained before it existed)
    anchor: bool = False
    k_max: int = Field(16, ge=1)  # candidates per slot at most
    # DROO's Delta: K <- max(best 0-based index over the window) + 2, i.e. its 1-based rank + 1 (an anchor
    # win counts as index K, so it widens K: the actor's own candidates all lost)
    k_update_every: int = Field(32, ge=1)
    memory_size: int = Field(2048, ge=1)
    batch_size: int = Field(32, ge=1)
    train_every: int = Field(4, ge=1)  # slots between gradient steps
    lr: float = Field(1e-3, gt=0)
    critic_lr: float = Field(1e-3, gt=0)
    # train on a random half of the options each episode (the rest masked), so the actor does not lean on
    # whichever option dominates the profile and scores any option set by its features
    option_subsets: bool = False
    n_md_range: Optional[tuple[int, int]] = (5, 20)  # GRL: N drawn per episode (None: the scenario's); DROO: None
    episode_slots: int = Field(100, ge=1)  # a new layout (and N) every episode
    checkpoint_every: int = Field(5, ge=1)  # episodes
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if self.policy == "droo" and (self.critic or self.anchor or self.n_md_range is not None):
            raise ValueError("droo: its fully connected network needs a fixed N (n_md_range: null) and uses "
                             "the planner as its only critic (critic: false) and its own candidates (anchor: false)")
        if self.n_md_range is not None and not 1 <= self.n_md_range[0] <= self.n_md_range[1]:
            raise ValueError("n_md_range must be (lo, hi) with 1 <= lo <= hi")
        return self


# ---- 2. the graph of a slot ------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _graph_index(n: int, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For N MDs and M ESs: pair_index (2, N M), MD-major, and the CSR structure (crow, col) of A + I
    of the complete bipartite MD-ES graph with self-loops: MD row i holds [i, N..N+M-1], ES row j
    holds [0..N-1, N+j] (computed once per shape; never written to)."""
    md, es = torch.arange(n), n + torch.arange(m)
    pair_index = torch.stack([md.repeat_interleave(m), es.repeat(n)])
    crow = torch.cat([torch.arange(n + 1) * (m + 1), n * (m + 1) + torch.arange(1, m + 1) * (n + 1)])
    col = torch.cat([torch.cat([md[:, None], es.expand(n, m)], 1).reshape(-1),
                     torch.cat([md.expand(m, n), es[:, None]], 1).reshape(-1)])
    return pair_index, crow, col


def _csr(crow: torch.Tensor, col: torch.Tensor, value: torch.Tensor, size: int) -> torch.Tensor:
    with warnings.catch_warnings():  # PyTorch flags sparse CSR as beta; GCNConv's spmm is its documented use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, value, (size, size))


@dataclass
class SlotGraph:
    """The slot graph the networks read (`slot_graph`); a plain dataclass, since PyG's `Data` costs
    ~0.1 ms per slot in attribute bookkeeping and the networks use none of its machinery."""

    x: torch.Tensor  # (N + M, NODE_FEATURES) node features, MDs then ESs
    adj: torch.Tensor  # (N + M, N + M) sparse CSR: the GCN's normalised adjacency with self-loops
    pair_index: torch.Tensor  # (2, N M) MD and ES node of each MD-ES pair, MD-major
    pair_attr: torch.Tensor  # (N M, EDGE_FEATURES)
    act_feat: torch.Tensor  # (N, 1 + M K, ACTION_FEATURES) the planner's features of each action
    mask: torch.Tensor  # (N, 1 + M K) bool: allowed actions
    has_task: torch.Tensor  # (N,) bool


def slot_graph(obs: Observation, plan: Plan) -> SlotGraph:
    """The MEC graph of a slot (nodes 0..N-1 MDs, N..N+M-1 ESs, x as `mec.env.observation_graph`)
    with, per MD-ES pair in MD-major order, its node indices (pair_index) and edge features
    (pair_attr: estimated SNR dB/10, distance km), the GCN's normalised adjacency (adj, sparse CSR),
    and per MD the planner's features of each action (act_feat (N, A, F)), the allowed actions (mask)
    and has_task."""
    n, m = obs.n_md, obs.n_es
    pair_attr = pair_features(obs)
    pair_index, crow, col = _graph_index(n, m)
    # GCN normalisation D^-1/2 (A + I) D^-1/2 once per slot, in closed form for the complete bipartite
    # graph (PyG's gcn_norm per layer costs more than the layer). Edges weigh by link quality (sigmoid
    # of the estimated SNR in dB/10), so an ES hears mostly the MDs it can actually serve. In numpy:
    # on arrays this small a NumPy call costs ~1 us, a torch call ~5-10 us.
    w = (1.0 / (1.0 + np.exp(-pair_attr[:, 0]))).reshape(n, m)
    deg_md, deg_es = 1 + w.sum(1), 1 + w.sum(0)
    norm = w / np.sqrt(deg_md[:, None] * deg_es[None, :])
    value = np.concatenate([np.concatenate([(1 / deg_md)[:, None], norm], 1).ravel(),
                            np.concatenate([norm.T, (1 / deg_es)[:, None]], 1).ravel()])
    return SlotGraph(x=torch.from_numpy(node_features(obs)), adj=_csr(crow, col, torch.from_numpy(value), n + m),
                     pair_index=pair_index, pair_attr=torch.from_numpy(pair_attr),
                     act_feat=torch.from_numpy(plan.features), mask=torch.from_numpy(plan.mask),
                     has_task=torch.from_numpy(obs.has_task))


class Chain(nn.Sequential):
    """nn.Sequential of Linear and ReLU layers, run without a module call per layer: a slot's inputs
    are tiny, so a call costs about as much as its layer (the actor took ~25% longer with them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.relu(x) if isinstance(layer, nn.ReLU) else nn.functional.linear(x, layer.weight, layer.bias)
        return x


def _mlp(n_in: int, hidden: int, n_out: int) -> Chain:
    return Chain(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class GraphEncoder(nn.Module):
    """Node embeddings: a linear input layer and residual GCN layers on the slot graph's normalised
    weighted adjacency (`slot_graph`)."""

    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.inp = nn.Linear(NODE_FEATURES, hidden)
        self.convs = nn.ModuleList(GCNConv(hidden, hidden, normalize=False) for _ in range(layers))

    def forward(self, g: SlotGraph) -> torch.Tensor:
        h = torch.relu(nn.functional.linear(g.x, self.inp.weight, self.inp.bias))
        for conv in self.convs:
            # GCNConv's computation on a normalised sparse adjacency (normalize=False), A (H W) + b, called
            # directly: its generic message-passing dispatch costs more than the arithmetic on a slot's
            # ~25 nodes (test_graph_encoder_is_gcnconv checks it against conv(h, adj))
            h = h + torch.relu(torch.sparse.mm(g.adj, nn.functional.linear(h, conv.lin.weight)) + conv.bias)
        return h


# ---- 3. actor ---------------------------------------------------------------------------------------
class GraphActor(nn.Module):
    """Relaxed scores (logits) over {local} + {(ES m, option o)} for every MD: a local head on the MD's
    embedding and an edge-option head on [MD, ES, edge features, option/action features]."""

    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.encoder = GraphEncoder(hidden, layers)
        self.local_head = _mlp(hidden + ACTION_FEATURES, hidden, 1)
        # the edge-option head is an MLP on [MD, ES, edge, option features]; its first layer is split
        # so the pair part is computed once per MD-ES pair rather than once per option
        self.pair_in = nn.Linear(2 * hidden + EDGE_FEATURES, hidden)
        self.option_in = nn.Linear(ACTION_FEATURES, hidden, bias=False)
        self.pair_out = Chain(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        # the heads learn a correction to a prior: scale x the action's stand-alone expected reward
        # (planner feature 3). With the heads' last layers at zero the untrained actor is the greedy
        # policy in softmax form, so DROO's self-training starts from sensible candidates instead of
        # thousands of random slots.
        self.prior = nn.Parameter(torch.tensor(10.0))
        for head in (self.local_head, self.pair_out):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def forward(self, g: SlotGraph) -> torch.Tensor:
        """(MDs in the batch, 1 + M K) logits, disallowed actions at -1e9 (every graph of a batch
        has the same M and option set; N may differ)."""
        h = self.encoder(g)
        feat = g.act_feat  # (sum N, 1 + M K, F)
        n_all, n_act = feat.shape[:2]
        md_node, es_node = g.pair_index
        m = md_node.shape[0] // n_all
        k = (n_act - 1) // m
        h_md = h[md_node.view(n_all, m)[:, 0]]
        local = self.local_head(torch.cat([h_md, feat[:, 0]], dim=1))
        pair = self.pair_in(torch.cat([h[md_node], h[es_node], g.pair_attr], dim=1))  # (sum N * M, H)
        option = self.option_in(feat[:, 1:].reshape(n_all * m, k, -1))  # (sum N * M, K, H)
        scores = self.pair_out(pair[:, None] + option)
        logits = torch.cat([local, scores.reshape(n_all, m * k)], dim=1) + self.prior * feat[:, :, 3]
        return logits.masked_fill(~g.mask, -1e9)

    @staticmethod
    def encode(obs: Observation, plan: Plan) -> SlotGraph:
        return slot_graph(obs, plan)

    @staticmethod
    def collate(items: list[SlotGraph]) -> SlotGraph:
        """One disjoint graph of the fields the networks read (PyG's generic Batch is ~10x slower)."""
        if len(items) == 1:
            return items[0]
        nodes = torch.tensor([0] + [g.x.shape[0] for g in items]).cumsum(0)
        nnz = torch.tensor([0] + [g.adj.values().shape[0] for g in items]).cumsum(0)
        cat = lambda key: torch.cat([getattr(g, key) for g in items])  # noqa: E731
        # block-diagonal adjacency: the graphs' CSR rows one after another, columns shifted
        crow = torch.cat([nnz[:1]] + [g.adj.crow_indices()[1:] + nnz[i] for i, g in enumerate(items)])
        col = torch.cat([g.adj.col_indices() + nodes[i] for i, g in enumerate(items)])
        adj = _csr(crow, col, torch.cat([g.adj.values() for g in items]), int(nodes[-1]))
        pair_index = torch.cat([g.pair_index + nodes[i] for i, g in enumerate(items)], dim=1)
        return SlotGraph(x=cat("x"), adj=adj, pair_index=pair_index, pair_attr=cat("pair_attr"),
                         act_feat=cat("act_feat"), mask=cat("mask"), has_task=cat("has_task"))


# ---- 4. learned critic -----------------------------------------------------------------------------
class GraphCritic(nn.Module):
    """Predicts realized minus planned reward of each task under a joint action, from the graph
    embedding of the MD and its chosen ES, the chosen action's features and the planner's verdict
    (expected value, served, load of the ES after admission). Zero at initialisation: an untrained
    critic leaves the planner's ranking unchanged."""

    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.encoder = GraphEncoder(hidden, layers)
        self.head = _mlp(2 * hidden + ACTION_FEATURES + 3, hidden, 1)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, g: SlotGraph, actions: torch.Tensor, value: torch.Tensor, served: torch.Tensor,
                load: torch.Tensor) -> torch.Tensor:
        """actions, value, served, load: (C, sum N) -> residuals (C, sum N)."""
        h = self.encoder(g)
        n_all, n_act = g.act_feat.shape[:2]
        md_node, es_node = g.pair_index
        m = md_node.shape[0] // n_all
        k = (n_act - 1) // m
        c = actions.shape[0]
        md = torch.arange(n_all)
        es = torch.clamp(actions - 1, min=0) // k
        h_md = h[md_node.view(n_all, m)[:, 0]].unsqueeze(0).expand(c, -1, -1)
        h_es = h[es_node[md * m + es]] * (actions > 0).unsqueeze(-1)
        feat = g.act_feat[md, actions]  # (C, sum N, F)
        x = torch.cat([h_md, h_es, feat, value.unsqueeze(-1), served.unsqueeze(-1), load.unsqueeze(-1)], dim=2)
        return self.head(x).squeeze(-1)


# ---- 5. candidates -----------------------------------------------------------------------------------
def candidates(logits: torch.Tensor, k: int) -> np.ndarray:
    """DROO's order-preserving quantisation, for categorical choices: the most likely joint action,
    then the k-1 most likely joint actions that change ONE MD's choice (ranked by the log-probability
    they give up, so the least certain MDs change first). Candidate order = likelihood order, which
    the adaptive K relies on. Returns (<= k, N) actions."""
    logp = torch.log_softmax(logits, dim=1).numpy()
    n, a = logp.shape
    best = logp.argmax(axis=1)
    loss = logp[np.arange(n), best][:, None] - logp  # >= 0; log-likelihood ratio given up
    loss[np.arange(n), best] = np.inf
    loss[logp < -1e8] = np.inf  # disallowed actions
    flat = loss.ravel()
    n_alt = min(k - 1, int(np.isfinite(flat).sum()))
    pick = np.argpartition(flat, n_alt)[:n_alt] if 0 < n_alt < len(flat) else np.flatnonzero(np.isfinite(flat))[:n_alt]
    pick = pick[np.argsort(flat[pick], kind="stable")]
    out = np.repeat(best[None], 1 + len(pick), axis=0)
    out[1 + np.arange(len(pick)), pick // a] = pick % a
    return out


# ---- 6. the agent -------------------------------------------------------------------------------------
@dataclass
class Decision:
    plan: Plan
    item: object  # the network's encoding of the slot
    action: np.ndarray  # (N,) agent actions of the chosen candidate
    value: np.ndarray  # (N,) planned values of the chosen candidate
    served: np.ndarray
    load: np.ndarray
    index: int  # rank of the chosen candidate


class Agent:
    """GRL-AECNN (GraphActor + planner + GraphCritic) or DROO-AECNN (policies.droo.FlatActor +
    planner); one `Policy`: `act` decides without learning."""

    def __init__(self, cfg: AgentConfig, actor: nn.Module, critic: GraphCritic | None = None, name: str = "grl"):
        self.cfg, self.actor, self.critic, self.name = cfg, actor, critic, name
        self.prefixes = cfg.options
        self.k = cfg.k_max
        self.best_index: deque[int] = deque(maxlen=cfg.k_update_every)
        self.memory: deque = deque(maxlen=cfg.memory_size)
        self.actor_opt = torch.optim.Adam(actor.parameters(), lr=cfg.lr)
        self.critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr) if critic else None
        self.steps = 0
        self.blocked: np.ndarray | None = None  # (K,) bool: options masked for this episode (training only)
        self.reset(cfg.seed)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, observation: Observation) -> np.ndarray:
        actions, _ = self.decide(observation)
        return actions

    def decide(self, obs: Observation) -> tuple[np.ndarray, Decision]:
        # a slot's networks are tiny: intra-op threads only add synchronisation (on a busy machine the
        # default thread pool made a decision 10-20x slower), so decide on one thread
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._decide(obs)
        finally:
            torch.set_num_threads(threads)

    def _decide(self, obs: Observation) -> tuple[np.ndarray, Decision]:
        plan = Plan(obs, allowed_options(obs, self.prefixes), self.cfg.headroom)
        if self.blocked is not None:
            plan.mask[:, 1:] &= ~np.tile(self.blocked, plan.n_es)
        item = self.actor.encode(obs, plan)  # outside inference mode: the replay memory trains on it
        with torch.inference_mode():
            cand = candidates(self.actor(item), self.k)
        if self.cfg.anchor:
            cand = np.concatenate([cand, np.where(plan.mask, plan.standalone, -np.inf).argmax(axis=1)[None]])
        ev = plan.evaluate(cand)
        score = ev.reward
        if self.critic is not None:
            with torch.inference_mode():
                residual = self.critic(item, torch.from_numpy(cand), *(torch.tensor(x, dtype=torch.float32)
                                                                       for x in (ev.value, ev.served, ev.load)))
            tasks = max(int(obs.has_task.sum()), 1)
            score = score + (residual.numpy() * obs.has_task).sum(axis=1) / tasks
        b = int(np.argmax(score))
        return plan.sim_action[cand[b]], Decision(plan, item, cand[b], ev.value[b], ev.served[b], ev.load[b], b)

    def learn(self, d: Decision, realized: np.ndarray) -> dict:
        """Store (graph, best action, planned and realized per-task rewards); update K; train every
        `train_every` slots. Returns the losses of the step (empty when none ran)."""
        self.memory.append((d.item, torch.from_numpy(d.action), torch.from_numpy(d.plan.obs.has_task),
                            torch.tensor(np.stack([d.value, d.served, d.load, realized - d.value]), dtype=torch.float32)))
        self.best_index.append(d.index)
        self.steps += 1
        if self.steps % self.cfg.k_update_every == 0:  # DROO: K tracks the largest useful candidate rank
            self.k = int(min(max(self.best_index) + 2, self.cfg.k_max))
        if self.steps % self.cfg.train_every or len(self.memory) < min(self.cfg.batch_size, self.cfg.memory_size):
            return {}
        idx = self.rng.choice(len(self.memory), size=min(self.cfg.batch_size, len(self.memory)), replace=False)
        batch = [self.memory[i] for i in idx]
        g = self.actor.collate([b[0] for b in batch])
        target = torch.cat([b[1] for b in batch])
        has = torch.cat([b[2] for b in batch])
        logits = self.actor(g)
        actor_loss = nn.functional.cross_entropy(logits[has], target[has]) if has.any() else logits.sum() * 0
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        out = {"actor_loss": actor_loss.item()}
        if self.critic is not None and has.any():
            value, served, load, residual = torch.cat([b[3] for b in batch], dim=1)
            pred = self.critic(g, target[None], value[None], served[None], load[None])[0]
            critic_loss = nn.functional.mse_loss(pred[has], residual[has])
            self.critic_opt.zero_grad()
            critic_loss.backward()
            self.critic_opt.step()
            out["critic_loss"] = critic_loss.item()
        return out


def realized_rewards(outcome: dict, n_md: int) -> np.ndarray:
    """(N,) per-task realized reward of a `MecSimulator.step` outcome (0 for MDs without a task)."""
    r = np.zeros(n_md)
    r[outcome["record"]["md"]] = outcome["record"]["reward"]
    return r


# ---- 7. training, checkpoints, zoo -------------------------------------------------------------------
def build_agent(cfg: AgentConfig, n_md: int | None = None, n_es: int | None = None, n_options: int | None = None) -> Agent:
    """A fresh agent (weights from cfg.seed). DROO's network needs the fixed N, M and option count."""
    torch.manual_seed(cfg.seed)
    if cfg.policy == "droo":
        from grl_aecnn.policies.droo import FlatActor

        return Agent(cfg, FlatActor(n_md, n_es, n_options, cfg.hidden), None, "droo")
    return Agent(cfg, GraphActor(cfg.hidden, cfg.layers), GraphCritic(cfg.critic_hidden, cfg.layers) if cfg.critic else None,
                 "grl")


def _shape_args(cfg: AgentConfig, scenario: Scenario, profile: OptionProfile) -> dict:
    if cfg.policy != "droo":
        return {}
    names = tuple(profile.names[o] for o in profile.offload_indices)
    k = len(allowed_among(names, None if cfg.options is None else tuple(cfg.options)))
    return {"n_md": scenario.n_md, "n_es": scenario.n_es, "n_options": k}


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for pid, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"{prefix}.{pid}.{key}"] = torch.as_tensor(value)
    return out


def _load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict = {}
    for name, t in tensors.items():
        if name.startswith(prefix + "."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = t
    sd["state"] = state
    opt.load_state_dict(sd)


def agent_tensors(agent: Agent, with_optimizers: bool) -> dict[str, torch.Tensor]:
    t = {f"actor.{k}": v for k, v in agent.actor.state_dict().items()}
    if agent.critic is not None:
        t |= {f"critic.{k}": v for k, v in agent.critic.state_dict().items()}
    if with_optimizers:
        t |= _optimizer_tensors("actor_opt", agent.actor_opt)
        if agent.critic_opt is not None:
            t |= _optimizer_tensors("critic_opt", agent.critic_opt)
    return t


def load_agent_tensors(agent: Agent, tensors: dict[str, torch.Tensor], source: str, with_optimizers: bool) -> None:
    part = lambda p: {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(p + ".")}  # noqa: E731
    load_module_state(agent.actor, part("actor"), source)
    if agent.critic is not None:
        load_module_state(agent.critic, part("critic"), source)
    if with_optimizers:
        _load_optimizer("actor_opt", agent.actor_opt, tensors)
        if agent.critic_opt is not None:
            _load_optimizer("critic_opt", agent.critic_opt, tensors)


def train_agent(cfg: AgentConfig, scenario: Scenario, profile: OptionProfile, slots: int, out_dir: str | Path,
                resume: bool = False, profile_source: str = "synthetic",
                log: Callable[[str], None] = print) -> dict:
    """Train for `slots` slots in total (episodes of cfg.episode_slots, a new layout each), checkpoint
    every cfg.checkpoint_every episodes into out_dir (checkpoint.safetensors + checkpoint.json), and
    write the final model.safetensors + card.json. With `resume`, continue from the checkpoint; the
    replay memory is not checkpointed and refills from the next slots."""
    out_dir = Path(out_dir)
    agent = build_agent(cfg, **_shape_args(cfg, scenario, profile))
    ep_rng = np.random.default_rng([cfg.seed, 1])
    state = {"slot": 0, "episode": 0, "rewards": []}
    ckpt = out_dir / "checkpoint.json"
    if resume:
        state = read_json(ckpt)
        if state["config"] != cfg.model_dump(mode="json"):
            raise CheckpointError(f"{ckpt}: written with another config; train into a fresh --out folder")
        load_agent_tensors(agent, load_tensors(out_dir / "checkpoint.safetensors"), str(out_dir), with_optimizers=True)
        ep_rng.bit_generator.state = state["episode_rng"]
        agent.rng.bit_generator.state = state["agent_rng"]
        agent.k, agent.steps = state["k"], state["steps"]
        agent.best_index.extend(state["best_index"])
        log(f"resumed at slot {state['slot']} (episode {state['episode']})")

    def checkpoint() -> None:
        save_tensors(out_dir / "checkpoint.safetensors", agent_tensors(agent, with_optimizers=True))
        atomic_write_json(ckpt, {**state, "config": cfg.model_dump(mode="json"), "episode_rng": ep_rng.bit_generator.state,
                                 "agent_rng": agent.rng.bit_generator.state, "k": agent.k, "steps": agent.steps,
                                 "best_index": list(agent.best_index)})

    while state["slot"] < slots:
        n = scenario.n_md if cfg.n_md_range is None else int(ep_rng.integers(cfg.n_md_range[0], cfg.n_md_range[1] + 1))
        sim = MecSimulator(scenario.replaced(n_md=n), profile, seed=int(ep_rng.integers(2**31 - 1)))
        if cfg.option_subsets:
            k = len(allowed_options(sim.observe(), agent.prefixes))
            agent.blocked = ep_rng.random(k) < 0.5
            agent.blocked[ep_rng.integers(k)] = False  # at least one option stays
        total, losses = 0.0, {}
        length = min(cfg.episode_slots, slots - state["slot"])
        for _ in range(length):
            actions, d = agent.decide(sim.observe())
            outcome = sim.step(actions)
            total += outcome["reward"]
            losses = agent.learn(d, realized_rewards(outcome, n)) or losses
        state["slot"] += length
        state["episode"] += 1
        state["rewards"].append(total / length)
        log(f"episode {state['episode']:4d}  slot {state['slot']:6d}  N={n:3d}  mean reward {total / length:+.4f}  K={agent.k}  "
            + "  ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        if state["episode"] % cfg.checkpoint_every == 0 or state["slot"] >= slots:
            checkpoint()
    agent.blocked = None
    return save_agent(agent, out_dir, {"scenario": scenario.name, "n_md": scenario.n_md, "n_es": scenario.n_es,
                                       "slots": state["slot"], "episodes": state["episode"],
                                       "mean_reward_last_episodes": float(np.mean(state["rewards"][-5:])),
                                       "episode_rewards": state["rewards"],
                                       "profile": {"source": profile_source, "model": profile.model,
                                                   "synthetic": profile.synthetic,
                                                   "options": [n for n in profile.names]}})


def save_agent(agent: Agent, out_dir: str | Path, info: dict) -> dict:
    """model.safetensors (networks only) + card.json with the config and the weights' SHA-256."""
    out_dir = Path(out_dir)
    weights = save_tensors(out_dir / "model.safetensors", agent_tensors(agent, with_optimizers=False))
    shape = {}
    if agent.cfg.policy == "droo":
        shape = {"n_md": agent.actor.n_md, "n_es": agent.actor.n_es, "n_options": agent.actor.n_options}
    card = {"name": f"{agent.cfg.name or agent.cfg.policy}-{info.get('scenario', 'run')}", "kind": "policy",
            "policy": agent.cfg.policy,
            "config": agent.cfg.model_dump(mode="json"), "shape": shape, **info, "weights_sha256": sha256_file(weights)}
    atomic_write_json(out_dir / "card.json", card)
    return card


def load_agent(card_path: str | Path, options: tuple[str, ...] | None = None, name: str | None = None) -> Agent:
    """An agent from a card (`card.json` or a zoo `<name>.json`) and the safetensors beside it
    (`model.safetensors` or `<name>.safetensors`), checked against the card's SHA-256. `options`
    restricts it to other codecs' options (the GRL actor does not depend on the option set)."""
    card_path = Path(card_path)
    card = read_json(card_path)
    if card.get("kind") != "policy":
        raise CheckpointError(f"{card_path}: not a policy card")
    weights = card_path.with_suffix(".safetensors") if card_path.name != "card.json" else card_path.parent / "model.safetensors"
    if not weights.exists():
        raise CheckpointError(f"{weights}: weights of {card_path} are missing")
    tensors = load_verified_tensors(weights, card.get("weights_sha256"), str(card_path))
    raw = dict(card["config"])
    if options is not None:
        raw["options"] = list(options)
    try:
        cfg = AgentConfig.model_validate(raw)
    except ValueError as exc:
        raise CheckpointError(f"{card_path}: invalid config ({exc})") from exc
    agent = build_agent(cfg, **card.get("shape", {}))
    load_agent_tensors(agent, tensors, str(weights), with_optimizers=False)
    agent.actor.eval()
    agent.name = name or cfg.name or card["policy"]
    return agent
