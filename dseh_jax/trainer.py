"""The generic trainer: runs any method's plan of phases with exact resume.

A method (:mod:`dseh_jax.methods`) gives the networks, a pmap-able step per network, the
plan and the hand-off of every phase; the trainer runs the epochs (a seeded permutation
per epoch, batches sharded over the local devices), logs, checkpoints at the end of every
phase and every ``checkpoint_every_epochs`` epochs once ``checkpoint_min_seconds`` have
passed, stops or warns on collapse (``on_collapse``), and scores the encoder's codes.

Everything a later epoch depends on is in the checkpoint (every network's train state, an
evolving hand-off, the PRNG key, the history) or a pure function of it (a phase's first
hand-off from the networks; each epoch's sample order from ``(seed, bits, epoch)``), so a
resumed run ends with the same codes as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from dseh_jax import distributed, evaluation, faults, methods, networks, run_identity
from dseh_jax import run_metrics
from dseh_jax import train_steps as ts
from dseh_jax.data.splits import RetrievalData
from dseh_jax.methods.base import Phase, RunContext, encode_splits
from dseh_jax.epochs import EpochRunner
from dseh_jax.run_checkpoints import RunCheckpoints

log = logging.getLogger("dseh_jax")

ON_COLLAPSE = ("stop", "warn")
FINAL = "final codes"        # the predict function of the final codes


class CollapseError(RuntimeError):
  """A phase ended with codes that carry (almost) no information (the method's
  ``end_phase`` says when). Checkpoints up to that phase are kept."""


@dataclasses.dataclass
class RunResult:
  """Codes in ``{-1, +1}`` (int8) and the metrics of one bit length."""
  num_bits: int
  train_codes: np.ndarray
  query_codes: np.ndarray
  database_codes: np.ndarray
  metrics: dict[str, Any]
  history: list[dict[str, Any]]
  # Method figures, e.g. DSEH's Fig. 5: {"index", "labnet", "imgnet", "labels"}.
  semantic: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Trainer:
  """Trains ``config.method`` at one code length on one dataset under ``workdir``."""

  def __init__(self, config: ml_collections.ConfigDict, data: RetrievalData, num_bits: int,
               workdir: str, *, progress: bool = True, fingerprint: Optional[str] = None):
    """``fingerprint``: :func:`dseh_jax.run_identity.data_fingerprint` of ``data``, when
    the caller has it (else computed here); stored in checkpoints and checked on resume."""
    self.config, self.data, self.num_bits = config, data, int(num_bits)
    self.workdir, self.progress = workdir, progress
    self.method = methods.get_method(config.get("method", "dseh"))
    self.identity = run_identity.identity(json.loads(config.to_json()),
                                          fingerprint or run_identity.data_fingerprint(data))
    self.num_devices = jax.local_device_count()
    for net in self.method.networks:
      if config[net].batch_size % jax.device_count():
        raise ValueError(f"{net}.batch_size={config[net].batch_size} is not divisible by the "
                         f"{jax.device_count()} devices ({jax.process_count()} processes)")
    if config.on_collapse not in ON_COLLAPSE:
      raise ValueError(f"on_collapse={config.on_collapse!r}; expected one of {ON_COLLAPSE}")
    self.plan = self.method.plan(config)
    self.total_epochs = sum(p.epochs for p in self.plan)
    self.num_train = len(data.train)
    self.key = jax.random.fold_in(jax.random.PRNGKey(config.seed), self.num_bits)
    keys = jax.random.split(self.key, 3)
    self.states = self.method.create_states(config, data, self.num_bits, keys)
    scale = networks.method_lr_scale(config)
    schedules = {net: networks.make_schedule(config[net], self.num_train, net, scale)
                 for net in self.method.networks}
    steps = {net: ts.pmap_step(self.method.train_step(config, data, net), donate=True)
             for net in self.method.networks}
    self.epochs = EpochRunner(config, data, self.num_bits, self.key, steps, schedules,
                              workdir=workdir, progress=progress)
    self._predict_fns = {net: ts.make_predict_fn(s.apply_fn) for net, s in self.states.items()}
    if config.imgnet.get("flip_average_codes") and len(data.input_shape) == 3:
      self._predict_fns[FINAL] = ts.make_predict_fn(
          self.states[self.method.encoder].apply_fn, flip_average=True)
    self.history: list[dict[str, Any]] = []
    self.run_context = RunContext(config, data, self.num_bits, keys[2], self._predict,
                                  self.history, encoder=self.method.encoder)
    self._last_report: Optional[evaluation.RetrievalReport] = None
    self.checkpoints = RunCheckpoints(workdir, config, self.plan, self.num_bits,
                                      self.identity, self.key)

  def _predict(self, network: str, state_rep, inputs, *, final: bool = False) -> Any:
    """``network``'s outputs over ``inputs``; ``final``: those of the final codes (flip
    averaged when ``imgnet.flip_average_codes`` is set for image inputs)."""
    fn = self._predict_fns.get(FINAL) if final else None
    return ts.predict_in_batches(fn or self._predict_fns[network], state_rep.params, inputs,
                                 self.config.eval.batch_size, self.num_devices)

  def restore(self) -> tuple[int, dict[str, Any], Any]:
    """``(epochs done, train states, hand-off or None)`` from the latest checkpoint under
    ``workdir`` (the fresh states and 0 when there is none); refuses a checkpoint of
    another training config, other data or another bit length (naming what differs); a
    damaged newest checkpoint falls back to the newest intact one
    (:class:`dseh_jax.run_checkpoints.RunCheckpoints`)."""
    found = self.checkpoints.restore(
        self.states, lambda phase: self.method.handoff_template(self.run_context, phase))
    if found is None:
      return 0, self.states, None
    done, states, handoff, history = found
    self.history[:] = list(history)
    log.info("resuming %d-bit run after epoch %d of %d", self.num_bits, done,
             self.total_epochs)
    return done, states, handoff

  def _run_epoch(self, phase: Phase, epoch: int, state_rep, handoff_rep):
    """One epoch of ``phase`` (:class:`dseh_jax.epochs.EpochRunner`)."""
    return self.epochs.run(phase, epoch, state_rep, handoff_rep)

  def _end_phase(self, phase: Phase, states_rep, handoff_rep) -> dict[str, Any]:
    if phase == self.plan[-1]:                   # the final codes from here on
      self.run_context.cache.update(final=True, encoder=None)
    summary = self.method.end_phase(self.run_context, phase, states_rep, handoff_rep)
    if phase == self.plan[-1]:
      _, q, db = encode_splits(self.run_context, states_rep[self.method.encoder])
      scores, self._last_report = run_metrics.retrieval_metrics(self.config.eval, q, db,
                                                                self.data)
      summary.update(scores)
    return summary

  def _check_collapse(self, summary: dict[str, Any]) -> None:
    """Stops the run (``on_collapse="stop"``) or warns (``"warn"``) when a phase ended
    collapsed (SPEC §5 hazards; the method's ``end_phase`` decides)."""
    if not summary.get("collapsed"):           # .get: summaries of older checkpoints
      return
    what, fix = self.method.collapse_message(self.run_context, summary)
    message = (f"{what}. The checkpoints are kept in {self.workdir}/checkpoints. Try: {fix}; "
               "or set on_collapse='warn' to continue anyway.")
    if self.config.on_collapse == "warn":
      log.warning("!" * 72)
      log.warning("%s", message)
      log.warning("!" * 72)
      return
    raise CollapseError(message)

  def last_report(self) -> Optional[evaluation.RetrievalReport]:
    """The full :class:`~dseh_jax.evaluation.RetrievalReport` of the latest evaluation
    (curves and per-query APs), or ``None`` before the first one."""
    return self._last_report

  # ------------------------------------------------------------------ the run

  def _log(self, entry: dict[str, Any]) -> None:
    self.history.append(entry)
    log.info("%d bits %s", self.num_bits, _format_metrics(entry))

  def run(self) -> RunResult:
    """Trains (or resumes) to the end of the plan and returns the codes and metrics."""
    start = time.time()
    done, states, handoff = self.restore()
    finished = [h for h in self.history if h["kind"].endswith("_round")]
    if finished:                   # a rerun after a collapse stop meets the same guard
      self._check_collapse(finished[-1])
    states_rep = {n: ts.replicate(s) for n, s in states.items()}
    handoff_rep = None if handoff is None else ts.replicate(handoff)
    every = max(1, int(self.config.checkpoint_every_epochs))
    min_gap, last_save = float(self.config.checkpoint_min_seconds), time.time()
    for phase in self.plan:
      if done >= phase.first_epoch + phase.epochs:
        continue
      if done == phase.first_epoch or handoff_rep is None or not phase.evolving:
        handoff_rep = ts.replicate(self.method.start_phase(self.run_context, phase, states_rep))
      for epoch in range(done - phase.first_epoch, phase.epochs):
        t0, net = time.time(), phase.network
        states_rep[net], handoff_rep, m = self._run_epoch(phase, epoch, states_rep[net],
                                                          handoff_rep)
        if net == self.method.encoder:
          self.run_context.cache.pop("encoder", None)     # the encoder has changed
        m.update(self.method.epoch_stats(self.run_context, phase, states_rep, handoff_rep,
                                         epoch))
        m.update({"kind": "epoch", "network": net, "round": phase.round, "epoch": epoch,
                  "seconds": round(time.time() - t0, 3)})
        self._log(m)
        faults.reached("epoch_end")
        done, last = phase.first_epoch + epoch + 1, epoch == phase.epochs - 1
        if last:
          summary = self._end_phase(phase, states_rep, handoff_rep)
          self._log(summary)
          faults.reached("phase_summary")
        if last or (done % every == 0 and
                    distributed.agree(time.time() - last_save >= min_gap)):
          self.checkpoints.save(done, states_rep, handoff_rep, self.history)
          last_save = time.time()
          faults.reached("checkpoint_saved")
        if last:
          self._check_collapse(summary)
    return self._result(states_rep, time.time() - start)

  def _result(self, states_rep, seconds: float) -> RunResult:
    """Codes of every split and the final metrics, from the last phase's summary."""
    if not self.run_context.cache.get("final"):      # resumed after the last phase
      self.run_context.cache.update(final=True, encoder=None)
    train_out, q, db = encode_splits(self.run_context, states_rep[self.method.encoder])
    rounds = [h for h in self.history if h["kind"].endswith("_round")]
    metrics = {k: v for k, v in rounds[-1].items()
               if k.startswith(("map", "precision_r", "recall_r", "zero_relevant"))}
    metrics["collapsed"] = any(h.get("collapsed") for h in rounds)
    metrics.update(self.method.result_metrics(self.history))
    metrics["seconds_this_process"] = round(seconds, 2)
    self.checkpoints.close()
    figures = self.method.figure_data(self.run_context, states_rep, train_out)
    return RunResult(self.num_bits, evaluation.binarize(train_out.hash_logits), q, db,
                     metrics, self.history, figures)


def _format_metrics(m: dict[str, Any]) -> str:
  return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
