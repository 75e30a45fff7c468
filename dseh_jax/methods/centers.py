"""Hash centres: fixed ``±1`` target codes per class, shared by CSQ, DPN and OrthoHash.

:func:`hash_centers` draws one code per class (rows of a Hadamard matrix, or Bernoulli(½)
draws); :func:`label_centers` turns them into one target per training point (CSQ's
multi-label rule). :class:`CenterMethod` is the one-network method around them: its
hand-off is built at the phase's start from the training labels and the run's
``handoff_key`` alone, so it is constant, never saved (``SAVED = ()``) and rebuilt the same
on resume. A subclass gives :meth:`CenterMethod.loss` and its ``config.<name>`` (which
holds ``centers``: ``"hadamard"`` or ``"random"``).
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from dseh_jax import baseline_losses, losses
from dseh_jax import train_steps as ts
from dseh_jax.methods import base

Array = jax.Array
KINDS = ("hadamard", "random")
RANDOM_TRIES = 20        # random centres: the best of this many draws (CSQ's code: 20)


def hadamard(k: int) -> np.ndarray:
  """Sylvester's Hadamard matrix ``H_k`` ``[k, k]`` of ``±1`` (``k`` a power of 2):
  ``H_1 = [1]``, ``H_2m = [[H_m, H_m], [H_m, −H_m]]``; ``H Hᵀ = k I``."""
  if k < 1 or k & (k - 1):
    raise ValueError(f"a Sylvester Hadamard matrix needs a power of 2; got {k}")
  h = np.ones((1, 1), np.float32)
  while len(h) < k:
    h = np.block([[h, h], [h, -h]])
  return h


def _min_distance(codes: np.ndarray) -> float:
  """The smallest Hamming distance between two different rows of ``±1`` ``codes``."""
  if len(codes) < 2:
    return float(codes.shape[1])
  d = (codes.shape[1] - codes @ codes.T) / 2
  return float(np.min(d[~np.eye(len(codes), dtype=bool)]))


def hash_centers(num_classes: int, num_bits: int, *, key: Array,
                 kind: str = "hadamard") -> np.ndarray:
  """``[c, K]`` float32 ``±1`` class centres.

  ``"hadamard"`` (CSQ, Yuan et al. 2020): the first ``c`` rows of ``[H_K; −H_K]`` (pairwise
  Hamming distance ``K/2``, or ``K`` between a row and its negation), for ``K`` a power of
  2; classes beyond ``2K`` get random rows as below, and any other ``K`` is all random.
  ``"random"``: i.i.d. Bernoulli(½) bits; of :data:`RANDOM_TRIES` draws from ``key`` the
  one with the largest minimum pairwise distance is kept (CSQ's code retries its random
  centres likewise), so two classes seldom share a centre. Deterministic given ``key``.
  """
  if kind not in KINDS:
    raise ValueError(f"kind={kind!r}; expected one of {KINDS}")
  fixed = np.zeros((0, num_bits), np.float32)
  if kind == "hadamard" and num_bits & (num_bits - 1) == 0:
    h = hadamard(num_bits)
    fixed = np.concatenate([h, -h])[:num_classes]
  rest = num_classes - len(fixed)
  if rest == 0:
    return fixed
  draws = np.asarray(jax.random.bernoulli(key, 0.5, (RANDOM_TRIES, rest, num_bits)))
  sets = [np.concatenate([fixed, np.where(d, 1.0, -1.0).astype(np.float32)]) for d in draws]
  return max(sets, key=_min_distance)                 # the first of the best


def label_centers(labels: np.ndarray, centers: np.ndarray, *, key: Array) -> np.ndarray:
  """``[n, K]`` float32 targets of points with multi-hot ``labels [n, c]``: the centre of
  the class for one label; for several, ``sign(Σ_{c ∈ y} centre_c)`` with each 0 replaced
  by the bit of one ``±1`` vector ``[K]`` drawn from ``key`` (CSQ's code: one vector for
  all points, so equal label sets get equal targets). Raises on a point with no label."""
  labels = np.asarray(labels, np.float32)
  empty = np.flatnonzero(labels.sum(axis=1) <= 0)
  if len(empty):
    raise ValueError(f"{len(empty)} point(s) have no label (first: row {empty[0]}); hash "
                     "centres need at least one label per point")
  total = (labels > 0).astype(np.float32) @ np.asarray(centers, np.float32)
  tie = np.where(np.asarray(jax.random.bernoulli(key, 0.5, (total.shape[1],))), 1.0, -1.0)
  return np.where(total > 0, 1.0, np.where(total < 0, -1.0, tie)).astype(np.float32)


def reduce_bits(per_bit: Array, reduction: str) -> Array:
  """``[b, m]`` → scalar: ``"mean"`` over all elements, ``"paper"`` ``Σ`` over the row then
  the mean over the batch (:mod:`dseh_jax.baseline_losses`)."""
  losses.check_reduction(reduction, baseline_losses.REDUCTIONS)
  return jnp.mean(per_bit) if reduction == "mean" else jnp.mean(jnp.sum(per_bit, axis=1))


class ClassCodes(struct.PyTreeNode):
  """A hand-off of one fixed code per class, ``codes [c, K]`` (OrthoHash's)."""
  codes: Array
  SAVED: ClassVar[tuple[str, ...]] = ()        # rebuilt from the run's key


class CenterMethod(base.Method):
  """A one-network method against fixed hash centres (one phase, not evolving).

  The hand-off is ``ts.CodeTargets(label_centers, labels)`` (:attr:`per_point`) or
  :class:`ClassCodes`; the centres are drawn from ``fold_in(handoff_key, 0)``, the ties
  of :func:`label_centers` from ``fold_in(handoff_key, 1)``."""
  choices = {"centers": KINDS}
  per_point = True
  # A per-point method's loss function, ``(*, logits [b, K], targets [b, K], **settings)``.
  target_loss: Callable[..., tuple[Array, dict[str, Array]]]

  def loss(self, logits: Array, handoff: Any, batch: dict[str, Array],
           **settings) -> tuple[Array, dict[str, Array]]:
    """The method's loss of the batch's hash logits ``[b, K]``; ``settings`` is
    ``config.<name>`` without ``centers``. Per point: :attr:`target_loss` against the
    batch's rows of the centres; a method with :class:`ClassCodes` overrides this."""
    return self.target_loss(logits=logits, targets=handoff.targets[batch["index"]],
                            **settings)

  def objective(self, config, network):
    settings = {k: v for k, v in config[self.name].to_dict().items() if k != "centers"}

    def objective(params, *, state, bank, batch, keys, axis_name, flip, max_shift):
      del axis_name                                  # the hand-off is constant
      z = ts.train_forward(params, state, batch, keys, flip=flip,
                           max_shift=max_shift).hash_logits
      total, terms = self.loss(z, bank, batch, **settings)
      balance = jnp.mean(jnp.abs(jnp.mean(jnp.where(z >= 0, 1.0, -1.0), axis=0)))
      return total, (terms, bank, {"bit_balance": balance})

    return objective

  def class_codes(self, run: base.RunContext) -> np.ndarray:
    """``[c, K]``: the run's class centres (``config.<name>.centers``)."""
    return hash_centers(run.train_labels.shape[1], run.num_bits,
                        key=jax.random.fold_in(run.handoff_key, 0),
                        kind=run.config[self.name].centers)

  def start_phase(self, run: base.RunContext, phase: base.Phase, states) -> Any:
    codes = self.class_codes(run)
    if not self.per_point:
      return ClassCodes(codes)
    targets = label_centers(run.train_labels, codes, key=jax.random.fold_in(run.handoff_key, 1))
    return ts.CodeTargets(targets, run.train_labels)

  def handoff_template(self, run: base.RunContext, phase: base.Phase) -> Any:
    if not self.per_point:
      return ClassCodes(np.zeros((run.train_labels.shape[1], run.num_bits), np.float32))
    return ts.CodeTargets(np.zeros((run.num_train, run.num_bits), np.float32), run.train_labels)
