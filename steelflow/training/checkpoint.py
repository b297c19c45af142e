"""The training loop's state on disk: ``models/checkpoint.pt`` (what ``--resume`` continues from) and the
per-epoch history (a CSV, and MLflow's metric names for a row)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from steelflow import atomic
from steelflow.errors import ConfigError

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"]


@dataclass
class State:
    """What a checkpoint carries besides the module states."""

    epoch: int = 0
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    best_score: float = 0.0  # train.keep's score at best_epoch
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """``models/checkpoint.pt``: the last finished epoch, for --resume; refused under other params or data."""

    path: Path
    fingerprint: dict[str, Any]

    def save(self, state: State, run: Any) -> None:
        blob = {
            "fingerprint": self.fingerprint,
            "state": {k: v for k, v in asdict(state).items() if k != "best_state"},
            "best_state": state.best_state,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
        }
        with atomic.atomic_path(self.path) as tmp:
            torch.save(blob, tmp)

    def restore(self, run: Any) -> State:
        blob = torch.load(self.path, map_location="cpu", weights_only=True)
        if blob["fingerprint"] != self.fingerprint:
            raise ConfigError(
                f"{self.path} was written with other params or data; rerun without --resume to start over"
            )
        run.model.load_state_dict(blob["model"])
        run.optimizer.load_state_dict(blob["optimizer"])
        run.scheduler.load_state_dict(blob["scheduler"])
        run.scaler.load_state_dict(blob["scaler"])
        return State(**blob["state"], best_state=blob["best_state"])


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    # the fixed columns first, then any the run added (tuning's val_robust_* scores)
    extra = list(dict.fromkeys(k for row in history for k in row if k not in HISTORY_COLUMNS))
    writer = csv.DictWriter(buf, fieldnames=[*HISTORY_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic.write_text(path, buf.getvalue())


def epoch_metrics(row: dict[str, float]) -> dict[str, float]:
    """One epoch's history row under MLflow names grouped by "/" (``train/loss``, ``val/accuracy``...)."""
    return (
        {
            "train/lr": row["lr"],
            "train/loss": row["train_loss"],
            "train/accuracy": row["train_accuracy"],
            "val/loss": row["val_loss"],
            "val/accuracy": row["val_accuracy"],
            "train/epoch_seconds": row["seconds"],
        }
        | ({"train/consistency": row["train_consistency"]} if "train_consistency" in row else {})
        | {
            # tuning's robust validation scores, when the row has them: val/robust_<family>, _worst, _mean
            f"val/{k.removeprefix('val_')}": v
            for k, v in row.items()
            if k.startswith("val_robust_")
        }
    )
