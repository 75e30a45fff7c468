"""One epoch of a phase: a seeded sample order, sharded batches, the pmap-ed steps.

With several processes (:mod:`dseh_jax.distributed`) every process draws the same order
and feeds its local devices its own rows of each global batch.

The order of epoch ``g`` (counted over the whole run) is a permutation drawn from
``SeedSequence([seed, bits, g])`` and the step keys are ``split(fold_in(key, g))``, so a
resumed run repeats them exactly. Batches with inputs are read (and decoded) in a
background thread two steps ahead.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping

import jax
import numpy as np
import tqdm

from dseh_jax import distributed, faults, input_pipeline, networks
from dseh_jax import train_steps as ts
from dseh_jax.methods.base import Phase


class EpochRunner:
  """Runs epochs of a run's phases; ``steps`` / ``schedules``: per network, the pmap-ed
  step and its learning-rate schedule."""

  def __init__(self, config, data, num_bits: int, key: Any,
               steps: Mapping[str, Callable], schedules: Mapping[str, Callable], *,
               workdir: str, progress: bool):
    self.config, self.data, self.num_bits, self.key = config, data, num_bits, key
    self.steps, self.schedules = steps, schedules
    self.workdir, self.progress = workdir, progress
    self.num_train = len(data.train)
    self.num_devices = jax.local_device_count()
    self._train_labels = data.train.labels.astype(np.float32)

  def _batches(self, phase: Phase, order: np.ndarray, batch_size: int, n_steps: int,
               device_axis: bool = True):
    """The epoch's batches in order, sharded ``[devices, per_device, ...]`` (``[B, ...]``
    without ``device_axis``, on one device).

    Batches with inputs read (and, for an :class:`~dseh_jax.input_pipeline.ImageArray`,
    decode) their items in a background thread and reach the devices two steps ahead;
    label-only batches (LabNet) are cheap enough to build in line.
    """
    def make_batch(s: int) -> dict[str, np.ndarray]:
      index = distributed.process_rows(order[s * batch_size:(s + 1) * batch_size])
      batch = {"labels": self._train_labels[index], "index": index.astype(np.int32)}
      if phase.inputs:
        batch["inputs"] = self.data.train.inputs[index]
      return batch

    if phase.inputs:
      return input_pipeline.prefetch_train_batches(make_batch, n_steps, self.num_devices,
                                                   axis_name=ts.AXIS_NAME,
                                                   device_axis=device_axis)
    if not device_axis:
      return (make_batch(s) for s in range(n_steps))
    return (ts.shard_batch(make_batch(s), self.num_devices) for s in range(n_steps))

  def run(self, phase: Phase, epoch: int, state_rep, handoff_rep):
    """One epoch of ``phase``; returns ``(state, hand-off, mean metrics)``."""
    g = phase.first_epoch + epoch
    batch_size = self.config[phase.network].batch_size
    n_steps = networks.steps_per_epoch(self.num_train, batch_size, phase.network)
    seq = np.random.SeedSequence([self.config.seed, self.num_bits, g])
    order = np.random.default_rng(seq).permutation(self.num_train)
    keys = np.asarray(jax.random.split(jax.random.fold_in(self.key, g), n_steps))
    step_fn, metrics = self.steps[phase.network], []
    # One device: the epoch runs the step without the device axis (OneDeviceStep).
    one = isinstance(step_fn, ts.OneDeviceStep)
    if one:
      step_fn, (state_rep, handoff_rep) = step_fn.unbatched, ts.drop_device_axis(
          (state_rep, handoff_rep))
    batches = self._batches(phase, order, batch_size, n_steps, device_axis=not one)
    with contextlib.closing(batches):              # stops the prefetch thread on errors
      bar = tqdm.tqdm(batches, total=n_steps, disable=not self.progress, leave=False,
                      desc=f"{self.num_bits}b r{phase.round} {phase.network} e{epoch}")
      for s, batch in enumerate(bar):
        rng = keys[s] if one else np.broadcast_to(keys[s], (self.num_devices, 2))
        state_rep, handoff_rep, m = step_fn(state_rep, handoff_rep, batch, rng)
        metrics.append(m)
        faults.reached(f"{phase.network}_step")
    if one:                    # the step's metrics stay scalars: one x[None] each is slow
      state_rep, handoff_rep = ts.add_device_axis((state_rep, handoff_rep))
    metrics = jax.device_get(metrics)            # one transfer per epoch, not per step
    mean = {k: float(np.mean([np.ravel(m[k])[0] for m in metrics])) for k in metrics[0]}
    if not np.isfinite(mean["loss"]):
      raise FloatingPointError(
          f"{phase.network} loss became {mean['loss']} in round {phase.round}, epoch {epoch} "
          f"at {self.num_bits} bits; the checkpoints before it are kept in "
          f"{self.workdir}/checkpoints (try a lower learning rate or optimizer.clip in a "
          "new workdir)")
    mean["lr"] = float(self.schedules[phase.network](np.asarray(state_rep.step[0]) - 1))
    return state_rep, handoff_rep, mean
