"""DSH (Liu, Wang, Shan, Chen, CVPR 2016): contrastive loss of the batch's real-valued
outputs against the bank of all training outputs + α × an L1 pull of ``|u|`` towards 1
(:func:`dsh_loss`).

``u`` is the hash layer's linear output; the codes are ``sign(u)``. Pairs are the batch
against the bank (:class:`~dseh_jax.methods.pairwise.PairwiseBankMethod`), as for the other
pairwise baselines, instead of the paper's pairs within a mini-batch. ``config.dsh``:
``margin`` (0: the paper's ``m = 2K``), ``alpha`` (the paper's 0.01), ``reduction``
(``"mean"``: per pair, as the authors' Caffe layer normalises) and ``outputs`` (``"raw"``,
or ``"centered"``, :mod:`~dseh_jax.methods.pairwise`).

On the embedded digits (from scratch, 32 bits) the codes collapse (nh = 4, MAP .49) while
|u| ≈ 0.95: the outputs span 2–3 directions from the first epochs on. Free codes (no
network) reach a lower loss with good codes, so this is the network's optimisation, not the
loss's minimum. None of these lifts the validation MAP above chance (.485–.503,
2026-12-07): margin K…4K, α 0…0.1, centring, HashNet's class-balanced pair weights, and
``hinge="distance"`` (whose codes stop collapsing, nh 644–945, but carry no labels).
``hinge``: ``"squared"`` (the paper) or ``"distance"`` (:func:`dsh_loss`).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from dseh_jax import baseline_losses, losses
from dseh_jax.methods.base import configure_section
from dseh_jax.methods.pairwise import PairwiseBankMethod

Array = jax.Array


HINGES = ("squared", "distance")


def dsh_loss(*, u: Array, labels: Array, bank_u: Array, bank_labels: Array,
             alpha: float, margin: Optional[float] = None, reduction: str = "mean",
             hinge: str = "squared") -> tuple[Array, dict[str, Array]]:
  """DSH (Liu et al., CVPR 2016, "Deep Supervised Hashing for Fast Image Retrieval", with
  the bank as the second point of every pair), minimised::

    d_ij = ‖u_i − u_j‖²,
    L = Σ_ij [½ S_ij d_ij + ½ (1 − S_ij) max(m − d_ij, 0) + α ‖|u_i| − 1‖₁],

  ``S_ij = 1`` iff the label sets intersect, ``m = 2K`` when ``margin`` is ``None``.
  ``hinge="distance"`` replaces the dissimilar term by ``½ (1 − S_ij) max(√m − √d_ij, 0)²``
  (Hadsell, Chopra and LeCun's contrastive form, the same threshold ``d_ij = m``): its push
  on two coinciding dissimilar points is ``√m``, where the paper's vanishes. The
  paper's regulariser of the pair's second point is that of a bank row, a constant, and is
  left out; the first point's is counted once per pair, so α keeps the paper's weight
  against the pair term under either ``reduction``: ``"mean"`` averages over the ``b × n``
  pairs (``regularizer`` = mean over the batch of ``‖|u_i| − 1‖₁``), ``"paper"`` sums over
  the bank and averages over the batch (``regularizer`` = ``n ×`` that).

  Args: ``u [b, K]``, ``labels [b, c]``, ``bank_u [n, K]`` (a constant), ``bank_labels
  [n, c]``. Returns ``(total, {"contrastive", "regularizer"})``,
  ``total = contrastive + α·regularizer``.
  """
  losses.check_reduction(reduction, baseline_losses.REDUCTIONS)
  if hinge not in HINGES:
    raise ValueError(f"dsh hinge: expected one of {HINGES}, got {hinge!r}")
  margin = 2.0 * u.shape[-1] if margin is None else margin
  sim = losses.label_similarity(labels.astype(jnp.float32),
                               bank_labels.astype(jnp.float32)).astype(u.dtype)
  bank_u = lax.stop_gradient(bank_u)
  dist = (jnp.sum(jnp.square(u), 1)[:, None] + jnp.sum(jnp.square(bank_u), 1)[None, :]
          - 2.0 * u @ bank_u.T)
  dist = jnp.maximum(dist, 0.0)                      # rounding of the expansion
  if hinge == "squared":
    push = jnp.maximum(margin - dist, 0.0)
  else:                 # √d with a finite gradient at d = 0 (the direction is then arbitrary)
    push = jnp.square(jnp.maximum(jnp.sqrt(margin) - jnp.sqrt(dist + 1e-12), 0.0))
  per_pair = 0.5 * sim * dist + 0.5 * (1.0 - sim) * push
  per_point = jnp.sum(jnp.abs(jnp.abs(u) - 1.0), axis=1)          # ‖|u_i| − 1‖₁ [b]
  pairs = 1.0 if reduction == "mean" else bank_u.shape[0]      # Σ_j of the pair's term
  terms = {"contrastive": pairs * jnp.mean(per_pair), "regularizer": pairs * jnp.mean(per_point)}
  return terms["contrastive"] + alpha * terms["regularizer"], terms


class DSH(PairwiseBankMethod):
  name = "dsh"
  choices = {**PairwiseBankMethod.choices, "hinge": HINGES}
  loss = staticmethod(dsh_loss)

  def loss_kwargs(self, settings, state):
    return {"alpha": settings["alpha"], "margin": settings["margin"] or None,
            "reduction": settings["reduction"], "hinge": settings["hinge"]}


METHOD = DSH()


def configure(config):
  return configure_section(config, "dsh", {"margin": 0.0, "alpha": 0.01,
                                           "reduction": "mean", "outputs": "raw",
                                           "hinge": "squared"})
