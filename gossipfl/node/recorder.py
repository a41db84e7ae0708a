"""What a peer leaves behind: its checkpoint, its metrics.jsonl and one log line per round."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from gossipfl.learning.trainer import Trainer
from gossipfl.node.checkpoint import Checkpoint, restore_checkpoint, save_checkpoint
from gossipfl.node.jsonl import JsonlWriter

__all__ = ["CHECKPOINT", "Recorder"]

log = logging.getLogger("gossipfl.node.peer")

CHECKPOINT = "checkpoint.safetensors"


class Recorder:
    def __init__(self, peer: str, output_dir: Path | None, rounds: int) -> None:
        self.peer = peer
        self.output_dir = output_dir
        self.rounds = rounds
        self._writer: JsonlWriter | None = None

    @property
    def checkpoint_path(self) -> Path | None:
        return self.output_dir / CHECKPOINT if self.output_dir else None

    def restore(self, template: Mapping[str, torch.Tensor], trainer: Trainer) -> Checkpoint | None:
        """The checkpoint to resume from, validated against ``template``, its optimizer state
        loaded into ``trainer``; None if there is none."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            log.warning("%s: --resume but no checkpoint at %s; starting fresh", self.peer, path)
            return None
        checkpoint = restore_checkpoint(path, self.peer, template, trainer)
        log.info("%s: resumed from round %d", self.peer, checkpoint.round)
        return checkpoint

    def open(self, append: bool) -> None:
        if self.output_dir is not None:
            self._writer = JsonlWriter(self.output_dir / "metrics.jsonl", append=append)

    async def record(
        self,
        row: dict[str, Any],
        weights: Mapping[str, torch.Tensor],
        optimizer: Mapping[str, torch.Tensor],
        state: Mapping[str, torch.Tensor],
    ) -> None:
        """Checkpoint round ``row['round']`` (off the event loop), append its row, log it."""
        path = self.checkpoint_path
        if path is not None:
            await asyncio.to_thread(save_checkpoint, path, row["round"], weights, optimizer, self.peer, state)
        if self._writer is not None:
            self._writer.write(row)
        log.info(
            "%s round %d/%d  loss %.4f  test acc %.4f  neighbours %d/%d  %.2fs",
            self.peer,
            row["round"],
            self.rounds,
            row["train_loss"],
            row["test_accuracy"],
            row["neighbours_reached"],
            row["degree"],
            row["seconds"],
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
