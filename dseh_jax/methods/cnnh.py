"""CNNH (Xia, Pan, Lai, Liu, Yan, AAAI 2014) in two stages.

Stage 1 (the phase's hand-off): approximate codes ``H ∈ {−1, +1}^{n×K}`` of the training
points from their similarity matrix ``S`` (:func:`dseh_jax.baseline_losses.cnnh_stage1_codes`,
drawn from the run's key). Stage 2 (the phase): the image network regresses ``tanh`` of its
hash logits onto the batch's rows of ``H`` (:func:`dseh_jax.baseline_losses.cnnh_loss`); the
codes are ``sign`` of the logits. ``config.cnnh``: ``iterations`` of stage 1, ``reduction``.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dseh_jax import baseline_losses
from dseh_jax import train_steps as ts
from dseh_jax.methods import base


class CNNH(base.Method):
  name = "cnnh"

  def objective(self, config, network):
    reduction = config.cnnh.reduction

    def objective(params, *, state, bank, batch, keys, axis_name, flip, max_shift):
      del axis_name                                  # the targets are constant
      out = ts.train_forward(params, state, batch, keys, flip=flip, max_shift=max_shift)
      total, terms = baseline_losses.cnnh_loss(
          outputs=jnp.tanh(out.hash_logits), targets=bank.targets[batch["index"]],
          reduction=reduction)
      return total, (terms, bank, {})

    return objective

  def start_phase(self, run: base.RunContext, phase: base.Phase, states) -> ts.CodeTargets:
    """Stage 1 on the training labels (``S_ij = 1`` iff the label sets intersect)."""
    labels = run.train_labels
    similarity = (labels @ labels.T > 0).astype(np.float32)
    codes = baseline_losses.cnnh_stage1_codes(
        jnp.asarray(similarity), run.num_bits, key=run.handoff_key,
        iterations=int(run.config.cnnh.iterations))
    return ts.CodeTargets(np.asarray(codes, np.float32), labels)

  def handoff_template(self, run, phase) -> ts.CodeTargets:
    return ts.CodeTargets(np.zeros((run.num_train, run.num_bits), np.float32), run.train_labels)


METHOD = CNNH()


def configure(config):
  return base.configure_section(config, "cnnh", {"iterations": 10, "reduction": "mean"})
