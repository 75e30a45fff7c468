"""CSQ (Yuan, Wang, Zhang, Zheng, Tian, Feng, CVPR 2020): every image is pulled towards the
hash centre of its label set (:func:`csq_loss`).

The hand-off is ``ts.CodeTargets``: one ``±1`` target per training point from
:func:`dseh_jax.methods.centers.label_centers` (a class's Hadamard row, or the sign of the
sum of its labels' rows, ties broken by one random vector), drawn from the run's hand-off
key at the phase's start: constant, and rebuilt the same on resume. ``u = tanh(z)`` of the
hash logits ``z``; the codes are ``sign(z)``. ``config.csq``: ``lam`` (λ = 1e-4, the
authors' code), ``centers`` (``"hadamard"``, the paper; ``"random"``) and ``reduction``
(``"mean"``, the authors' code).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dseh_jax.methods import base, centers

Array = jax.Array


def csq_loss(*, logits: Array, targets: Array, lam: float, reduction: str = "mean"
             ) -> tuple[Array, dict[str, Array]]:
  """CSQ (Yuan et al., CVPR 2020, "Central Similarity Quantization for Efficient Image and
  Video Retrieval"), minimised::

    u = tanh(z),   L = BCE((u + 1)/2, (t + 1)/2) + λ (|u| − 1)²   (per bit),

  with the central term in the stable form ``BCE = softplus(2z) − (t + 1) z`` (as
  ``(u + 1)/2 = σ(2z)``), which stays finite and keeps its gradient where ``tanh``
  saturates (the authors' ``nn.BCELoss`` clips the log at −100 there).

  Args: ``logits`` ``z [b, K]``, ``targets`` ``t [b, K]`` the points' ``±1`` centres.
  ``reduction``: ``"mean"`` over the ``b × K`` bits (the authors' code), ``"paper"`` ``Σ_k``
  then the mean over the batch. Returns ``(total, {"central", "quantization"})``, ``total
  = central + λ·quantization``.
  """
  targets = targets.astype(logits.dtype)
  central = jax.nn.softplus(2.0 * logits) - (targets + 1.0) * logits
  quantization = jnp.square(jnp.abs(jnp.tanh(logits)) - 1.0)
  terms = {"central": centers.reduce_bits(central, reduction),
           "quantization": centers.reduce_bits(quantization, reduction)}
  return terms["central"] + lam * terms["quantization"], terms


class CSQ(centers.CenterMethod):
  name = "csq"
  target_loss = staticmethod(csq_loss)


METHOD = CSQ()


def configure(config):
  return base.configure_section(config, "csq", {
      "lam": 1e-4, "centers": "hadamard", "reduction": "mean"})
