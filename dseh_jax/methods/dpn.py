"""DPN (Fan, Wang, Shen, Shao, IJCAI 2020): every bit of the hash logits is pushed past a
margin on the side of its target code, the polarisation loss (:func:`dpn_loss`).

The targets are as CSQ's (``ts.CodeTargets`` from
:func:`dseh_jax.methods.centers.label_centers`, constant, rebuilt from the run's key on
resume), but from random Bernoulli(½) class codes by default, as the paper assigns them.
The codes are ``sign(z)``. ``config.dpn``: ``margin`` (m = 1: the paper's choice, and the
logit at which ``tanh`` reaches .76, so a bit at the margin is well clear of 0),
``centers`` (``"random"``, the paper; ``"hadamard"``) and ``reduction``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dseh_jax.methods import base, centers

Array = jax.Array


def dpn_loss(*, logits: Array, targets: Array, margin: float, reduction: str = "mean"
             ) -> tuple[Array, dict[str, Array]]:
  """DPN (Fan et al., IJCAI 2020, "Deep Polarized Network for Supervised Learning of
  Accurate Binary Hashing Codes"), the polarisation loss, minimised::

    L = max(m − z ⊙ t, 0)   (per bit),

  zero once every bit has ``z_k t_k ≥ m``. The paper's loss has no other term (the
  polarisation itself does the quantisation); so has this one.

  Args: ``logits`` ``z [b, K]`` (the hash layer's linear output), ``targets`` ``t [b, K]``
  the points' ``±1`` target codes, ``margin`` ``m ≥ 0``. ``reduction``: ``"mean"`` over the
  ``b × K`` bits, ``"paper"`` ``Σ_k`` then the mean over the batch. Returns ``(total,
  {"polarization"})``.
  """
  hinge = jnp.maximum(margin - logits * targets.astype(logits.dtype), 0.0)
  terms = {"polarization": centers.reduce_bits(hinge, reduction)}
  return terms["polarization"], terms


class DPN(centers.CenterMethod):
  name = "dpn"
  target_loss = staticmethod(dpn_loss)


METHOD = DPN()


def configure(config):
  return base.configure_section(config, "dpn", {
      "margin": 1.0, "centers": "random", "reduction": "mean"})
