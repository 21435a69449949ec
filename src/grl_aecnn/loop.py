"""A resumable epoch loop shared by every trainer (backbones, codec stages, policies).

After each epoch the model, the optimizer's tensor state and the scheduler are checkpointed: one
safetensors file (keys `model.*` and `optim.<param index>.<name>`) plus `state.json`, written last,
which names that file and its SHA-256. The JSON is the commit point, so an interrupted write never
leaves a checkpoint that looks valid. Epoch e draws its randomness from a generator seeded with
(seed, e), so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from grl_aecnn.errors import CheckpointError
from grl_aecnn.store import atomic_write_json, load_module_state, load_verified_tensors, read_json, save_tensors, sha256_file

STATE_FILE = "state.json"

# train_epoch(epoch, generator, on_step) -> mean training loss; on_step(loss) advances the progress bar.
TrainEpoch = Callable[[int, torch.Generator, Callable[[float], None]], float]

# Config keys that change only speed (and float rounding), not what is computed: a run may resume
# under other values of these, e.g. a CPU checkpoint on a GPU.
RUNTIME_ONLY_KEYS = frozenset({"threads", "device"})


def _identity(config: dict | None) -> dict | None:
    return None if config is None else {k: v for k, v in config.items() if k not in RUNTIME_ONLY_KEYS}


# Training arithmetic: bf16 autocasts convolutions and matrix products (about 1.9x faster on CPUs with
# AMX, as this project's machines have); parameters, optimizer state and losses stay fp32.
Precision = Literal["fp32", "bf16"]
PRECISION_HELP = ("training arithmetic: fp32, or bf16 autocast of convolutions and matrix products (about 1.9x "
                  "faster on CPUs with AMX); weights, optimizer, losses and evaluation stay fp32")


def optimize_epoch(
    batches: Iterable,
    loss_of: Callable[..., tuple[torch.Tensor, int]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    on_step: Callable[[float], None],
    precision: Precision = "fp32",
    device_type: str = "cpu",
) -> float:
    """One pass of gradient steps; loss_of(batch) -> (mean loss, batch size), computed under `precision`
    (loss functions get fp32 inputs: they cast). Returns the mean loss."""
    total, seen = 0.0, 0
    for batch in batches:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss, n = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total, seen = total + float(loss.detach()) * n, seen + n
        on_step(total / seen)
    return total / seen


@dataclass
class EpochLoop:
    out: Path
    config: dict  # the resolved config; a checkpoint only resumes under the same one
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epochs: int
    steps_per_epoch: int
    seed: int
    description: str

    def _optimizer_tensors(self) -> dict[str, torch.Tensor]:
        return {f"optim.{idx}.{name}": value for idx, state in self.optimizer.state_dict()["state"].items()
                for name, value in state.items() if isinstance(value, torch.Tensor)}

    def _save(self, epoch: int, history: list) -> None:
        weights = self.out / f"checkpoint-epoch{epoch:04d}.safetensors"
        save_tensors(weights, {**{f"model.{k}": v for k, v in self.model.state_dict().items()},
                               **self._optimizer_tensors()})
        state_path = self.out / STATE_FILE
        previous = read_json(state_path)["weights"] if state_path.exists() else None
        atomic_write_json(state_path, {
            "epochs_done": epoch,
            "weights": weights.name,
            "weights_sha256": sha256_file(weights),
            # param_groups carry the current learning rate, which the scheduler rewrites only at its next step.
            "optimizer_param_groups": self.optimizer.state_dict()["param_groups"],
            "scheduler": self.scheduler.state_dict(),
            "history": history,
            "config": self.config,
        })
        if previous and previous != weights.name:
            (self.out / previous).unlink(missing_ok=True)

    def _load(self) -> tuple[int, list]:
        state = read_json(self.out / STATE_FILE)
        if _identity(state.get("config")) != _identity(self.config):
            raise CheckpointError(f"{self.out / STATE_FILE}: was written by a different config; refusing to resume")
        weights = self.out / state["weights"]
        tensors = load_verified_tensors(weights, state.get("weights_sha256"), STATE_FILE)
        load_module_state(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(weights))
        optimizer_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                optimizer_state.setdefault(int(idx), {})[name] = value
        self.optimizer.load_state_dict({"state": optimizer_state, "param_groups": state["optimizer_param_groups"]})
        self.scheduler.load_state_dict(state["scheduler"])
        return int(state["epochs_done"]), list(state["history"])

    def run(
        self,
        train_epoch: TrainEpoch,
        evaluate: Callable[[], float] | None = None,
        eval_every: int = 1,
        resume: bool = False,
        stop_after: int | None = None,
        show_progress: bool = True,
    ) -> tuple[list[dict], bool]:
        """Train the remaining epochs; return (history, finished). Each record: epoch, train_loss, wall_s[, test_top1]."""
        start, history = 0, []
        if resume:
            if not (self.out / STATE_FILE).exists():
                raise CheckpointError(f"--resume: no checkpoint in {self.out}")
            start, history = self._load()
        elif (self.out / STATE_FILE).exists():
            raise CheckpointError(
                f"{self.out} already holds a checkpoint; pass --resume to continue it or choose another output folder")
        last = self.epochs if stop_after is None else min(self.epochs, start + stop_after)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"), disable=not show_progress,
        ) as progress:
            task = progress.add_task(self.description, total=self.epochs * self.steps_per_epoch,
                                     completed=start * self.steps_per_epoch, status="")
            for epoch in range(start + 1, last + 1):
                began = time.perf_counter()
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self.model.train()

                def on_step(loss: float, epoch: int = epoch) -> None:
                    progress.update(task, advance=1, status=f"epoch {epoch} loss {loss:.3f}")

                record = {"epoch": epoch, "train_loss": train_epoch(epoch, generator, on_step),
                          "wall_s": time.perf_counter() - began}
                if evaluate is not None and (epoch % eval_every == 0 or epoch == self.epochs):
                    record["test_top1"] = evaluate()
                    progress.console.log(f"{self.description} epoch {epoch}: loss {record['train_loss']:.4f} "
                                         f"test top-1 {record['test_top1']:.4f}")
                history.append(record)
                self._save(epoch, history)
        return history, last == self.epochs
