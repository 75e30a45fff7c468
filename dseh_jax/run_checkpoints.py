"""A trainer's checkpoints at one code length: what is saved, and the checks on resume.

A checkpoint holds every network's train state, the PRNG key and, inside a phase whose
hand-off evolves (DSEH's LabNet buffers, a baseline's bank), that hand-off; its metadata
hold the epochs done, the bit length, the config, the data fingerprint and the history.
Restoring refuses a checkpoint of another run (:mod:`dseh_jax.run_identity`) and falls back
from a damaged newest step to the newest intact one (:class:`RunCheckpointer`).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Optional, Sequence

import jax

from dseh_jax import run_identity
from dseh_jax import train_steps as ts
from dseh_jax.checkpointing import RunCheckpointer
from dseh_jax.methods.base import Phase

log = logging.getLogger("dseh_jax")


class RunCheckpoints:
  """Saves and restores one run's checkpoints under ``workdir/checkpoints``."""

  def __init__(self, workdir: str, config, plan: Sequence[Phase], num_bits: int,
               identity: dict[str, Any], key: Any):
    self.workdir, self.config, self.plan = workdir, config, list(plan)
    self.num_bits, self.identity, self.key = num_bits, identity, key
    self.checkpointer = RunCheckpointer(f"{workdir}/checkpoints",
                                        max_to_keep=config.checkpoints_to_keep)

  def phase_of(self, epochs_done: int) -> Phase:
    """The phase of the last epoch done."""
    return next(p for p in self.plan if epochs_done <= p.first_epoch + p.epochs)

  def tree(self, states, handoff, epochs_done: int) -> dict[str, Any]:
    out = {**states, "key": self.key}
    if self.phase_of(epochs_done).evolving:
      out["bank"] = {f: getattr(handoff, f) for f in handoff.SAVED}
    return out

  def save(self, epochs_done: int, states_rep, handoff_rep, history: list) -> None:
    # Host numpy arrays: orbax writes them once however many processes hold them.
    tree = jax.device_get(self.tree(ts.unreplicate(states_rep), ts.unreplicate(handoff_rep),
                                    epochs_done))
    meta = {"epochs_done": epochs_done, "num_bits": self.num_bits,
            "config": json.loads(self.config.to_json()),
            "data_fingerprint": self.identity["data_fingerprint"], "history": history}
    self.checkpointer.save(epochs_done, tree, meta)

  def restore(self, states: dict[str, Any], handoff_template: Callable[[Phase], Any]
              ) -> Optional[tuple[int, dict[str, Any], Any, list]]:
    """``(epochs done, states, hand-off or None, history)`` of the latest intact
    checkpoint, None when there is none; ``states``: fresh states of the right shapes,
    ``handoff_template(phase)``: a hand-off of the right shapes."""
    found = self.checkpointer.latest_intact_meta()
    if found is None:
      return None
    step, meta = found
    where = f"{self.workdir}/checkpoints/{step}"
    stored = run_identity.identity(meta["config"], meta.get("data_fingerprint"))
    run_identity.check_same_run(stored, self.identity, where)   # fingerprint None: older
    if meta["num_bits"] != self.num_bits:
      raise run_identity.RunMismatchError(
          f"{where} holds a {meta['num_bits']}-bit run, not {self.num_bits} bits")
    done = int(meta["epochs_done"])
    template = handoff_template(self.phase_of(done))
    step, tree, meta = self.checkpointer.restore_latest(self.tree(states, template, done))
    handoff = template.replace(**tree["bank"]) if "bank" in tree else None
    return int(meta["epochs_done"]), {n: tree[n] for n in states}, handoff, meta["history"]

  def close(self) -> None:
    self.checkpointer.close()
