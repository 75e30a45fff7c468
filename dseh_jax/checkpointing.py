"""Checkpoints of a whole DSEH run: arrays through orbax, bookkeeping as JSON, checksums.

A checkpoint holds ``state`` (a pytree of arrays: both networks' train states, LabNet's
buffers, the run's PRNG key) and ``meta`` (JSON: the position in the schedule, the metrics
history, the config). Saves are synchronous and atomic (orbax writes to a temporary
directory and renames it). Once orbax is done, the size and SHA-256 of every file of the
step go into ``<step>/DSEH_CHECKSUMS.json``, written last; a step without it was cut short.

:meth:`RunCheckpointer.restore_latest` restores the newest step that matches its checksums
and loads; newer damaged steps are logged and moved to ``<directory>/damaged``. Steps of an
older version, with no checksums at all, are loaded unverified with a warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Callable, Optional

import flax.serialization
import jax
import orbax.checkpoint as ocp

from dseh_jax import atomic_io, distributed, faults

MANIFEST = "DSEH_CHECKSUMS.json"
DAMAGED = "damaged"
NO_CHECKSUM = f"no {MANIFEST}"
log = logging.getLogger("dseh_jax")


class CheckpointDamagedError(RuntimeError):
  """A checkpoint directory holds steps, none of them intact."""


def _digests(step_dir: str) -> dict[str, tuple[int, str]]:
  """``relative path -> (size, sha256)`` of every file under ``step_dir`` but the manifest."""
  out = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir).replace(os.sep, "/")
      if rel != MANIFEST:
        with open(path, "rb") as f:
          out[rel] = (os.fstat(f.fileno()).st_size, hashlib.file_digest(f, "sha256").hexdigest())
  return dict(sorted(out.items()))


def _brief(problems: list[str], most: int = 3) -> str:
  more = f"; and {len(problems) - most} more" if len(problems) > most else ""
  return "; ".join(problems[:most]) + more


def _describe(error: Exception) -> str:
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


class RunCheckpointer:
  """Saves and restores ``(state, meta)`` pairs under ``directory``, keyed by an int step."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             enable_async_checkpointing=False))
    self._warned: set[str] = set()

  def latest_step(self) -> Optional[int]:
    """The newest step on disk, intact or not."""
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves ``step`` through orbax, then its checksums; ``step`` must be the newest."""
    if not self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))):
      raise ValueError(f"checkpoint {step} not saved: {self.directory} already holds step "
                       f"{self.latest_step()}")
    self._manager.wait_until_finished()
    faults.reached("checkpoint_write")
    step_dir = self._step_dir(step)
    if distributed.is_primary():                 # orbax has synced the processes
      files = {rel: {"size": size, "sha256": digest}
               for rel, (size, digest) in _digests(step_dir).items()}
      atomic_io.write_json(os.path.join(step_dir, MANIFEST), {"files": files})
    distributed.barrier(f"checkpoint manifest {self.directory} {step}")

  def verify(self, step: int) -> list[str]:
    """What is wrong with checkpoint ``step`` against its checksums; empty when intact."""
    step_dir = self._step_dir(step)
    if not os.path.isdir(step_dir):
      return [f"{step_dir} is missing"]
    try:
      with open(os.path.join(step_dir, MANIFEST), encoding="utf-8") as f:
        recorded = {str(rel): (int(v["size"]), str(v["sha256"]))
                    for rel, v in json.load(f)["files"].items()}
    except FileNotFoundError:
      return [NO_CHECKSUM]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
      return [f"{MANIFEST}: unreadable ({type(e).__name__})"]
    actual = _digests(step_dir)
    problems = []
    for rel in sorted(recorded.keys() | actual.keys()):
      want, got = recorded.get(rel), actual.get(rel)
      if got is None:
        problems.append(f"{rel}: missing")
      elif want is None:
        problems.append(f"{rel}: not in {MANIFEST}")
      elif want[0] != got[0]:
        problems.append(f"{rel}: {got[0]} bytes, {want[0]} when saved")
      elif want[1] != got[1]:
        problems.append(f"{rel}: digest mismatch")
    return problems

  def read_meta(self, step: int) -> dict:
    """The JSON part of checkpoint ``step`` alone (cheap; no arrays are read; unverified)."""
    return self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]

  def restore(self, step: int, like_state: Any) -> Any:
    """Restores the arrays of ``step``, shaped like ``like_state`` (unverified)."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like_state)
    return self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))["state"]

  def latest_intact_meta(self) -> Optional[tuple[int, dict]]:
    """``(step, meta)`` of the newest intact checkpoint (no arrays are read), None when there
    are no steps; raises :class:`CheckpointDamagedError` when none is intact."""
    found = self._newest_intact(self.read_meta)
    return None if found is None else (found[0], found[1])

  def restore_latest(self, like_state: Any) -> Optional[tuple[int, Any, dict]]:
    """``(step, state, meta)`` of the newest intact checkpoint, None when there are no steps.

    Newer damaged steps are logged and moved to ``<directory>/damaged`` (so that the run
    can save those steps again); raises :class:`CheckpointDamagedError` when none is intact.
    """
    found = self._newest_intact(lambda s: (self.restore(s, like_state), self.read_meta(s)))
    if found is None:
      return None
    step, (state, meta), damaged = found
    for bad in damaged:
      dest = os.path.join(self.directory, DAMAGED, str(bad))
      n = 1
      while os.path.exists(dest):
        n += 1
        dest = os.path.join(self.directory, DAMAGED, f"{bad}-{n}")
      os.makedirs(os.path.dirname(dest), exist_ok=True)
      os.replace(self._step_dir(bad), dest)
      log.warning("moved damaged checkpoint %d to %s", bad, dest)
    if damaged:
      self._manager.reload()
    return step, state, meta

  def restore_latest_params(self, network: str, like_params: Any
                            ) -> Optional[tuple[int, Any, dict]]:
    """``(step, params, meta)``: the parameters of one network (a key of the saved state,
    e.g. ``"imgnet"``) from the newest intact checkpoint, shaped like ``like_params``;
    None when there are no steps. Damaged steps are skipped (and left in place)."""
    def load(step: int):
      raw = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore()))["state"]
      if network not in raw:
        raise KeyError(f"no network {network!r} in the checkpoint (it has {sorted(raw)})")
      return flax.serialization.from_state_dict(like_params, raw[network]["params"])
    found = self._newest_intact(lambda s: (load(s), self.read_meta(s)))
    return None if found is None else (found[0], *found[1])

  def close(self) -> None:
    self._manager.close()

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _warn_once(self, message: str) -> None:
    if message not in self._warned:
      self._warned.add(message)
      log.warning("%s", message)

  def _newest_intact(self, load: Callable[[int], Any]) -> Optional[tuple[int, Any, list[int]]]:
    """``(step, load(step), newer damaged steps)`` for the newest step that verifies and
    loads; None when there are no steps. A step without checksums is accepted unverified
    only if no older step has them (it was saved by an older version, not cut short)."""
    self._manager.reload()
    steps = sorted(self._manager.all_steps(), reverse=True)
    with_manifest = [os.path.exists(os.path.join(self._step_dir(s), MANIFEST)) for s in steps]
    damaged: dict[int, str] = {}
    for i, step in enumerate(steps):
      problems = self.verify(step)
      legacy = problems == [NO_CHECKSUM] and not any(with_manifest[i + 1:])
      if problems and not legacy:
        damaged[step] = _brief(problems)
        continue
      try:
        loaded = load(step)
      except Exception as e:  # pylint: disable=broad-except  # orbax, tensorstore, json
        damaged[step] = _brief(problems + [_describe(e)])
        continue
      for bad, problem in damaged.items():
        self._warn_once(f"checkpoint {bad} in {self.directory} is damaged ({problem}); "
                        f"falling back to step {step}")
      if legacy:
        self._warn_once(f"checkpoint {step} in {self.directory} has no checksum (saved by an "
                        "older version, or killed between orbax's save and the checksum); "
                        "orbax read it whole, loaded it unverified")
      return step, loaded, list(damaged)
    if not steps:
      return None
    each = ", ".join(f"step {s} ({p})" for s, p in damaged.items())
    raise CheckpointDamagedError(f"no intact checkpoint in {self.directory}: {each}; move the "
                                 "directory aside to start over")
