"""Checkpoints of a whole DSEH run: arrays through orbax, bookkeeping as JSON.

A checkpoint holds ``state`` (a pytree of arrays: both networks' train states, LabNet's
buffers, the run's PRNG key) and ``meta`` (JSON: the position in the schedule, the metrics
history, the config). Saves are synchronous and atomic (orbax writes to a temporary
directory and renames it), so a run killed at any moment leaves the last complete
checkpoint readable.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class RunCheckpointer:
  """Saves and restores ``(state, meta)`` pairs under ``directory``, keyed by an int step."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             enable_async_checkpointing=False))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    """The JSON part of checkpoint ``step`` alone (cheap; no arrays are read)."""
    return self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]

  def restore(self, step: int, like_state: Any) -> Any:
    """Restores the arrays of ``step``, shaped like ``like_state`` (a pytree of arrays)."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like_state)
    return self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))["state"]

  def close(self) -> None:
    self._manager.close()
