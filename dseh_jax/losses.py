"""DSEH's losses as pure functions (SPEC §2–§4).

Every term has two reductions, chosen by ``reduction``:

* ``"paper"``: the paper's sums over codes / training points (eq. 11, 14), divided by
  the batch size so that the whole loss is a per-example mean. Dividing every term by the
  same constant keeps the paper's relative weights (α, β, γ, η) exactly.
* ``"code"``: the authors' TensorFlow normalisation: pairwise terms averaged over
  ``batch × n_train``, J3 = 0.01 × mean over elements, J4 = ½ × mean over elements,
  J2 of ImgNet averaged over elements.

Both reductions are means over the batch axis, so the mean over device shards of a
sharded batch equals the value on the whole batch (what ``lax.pmean`` relies on).
"""
from __future__ import annotations

import functools
from typing import Mapping, Optional

import jax
import jax.numpy as jnp

Array = jax.Array

REDUCTIONS = ("paper", "code")


def check_reduction(reduction: str, allowed: tuple[str, ...] = REDUCTIONS) -> None:
  """Raises a ValueError naming ``reduction`` unless it is one of ``allowed``."""
  if reduction not in allowed:
    raise ValueError(f"reduction={reduction!r}; expected one of {allowed}")


def label_similarity(labels_a: Array, labels_b: Array) -> Array:
  """``S_ij = 1`` if ``y_i`` and ``y_j`` share a label, else 0 (SPEC §1).

  Args: ``labels_a [n_a, c]``, ``labels_b [n_b, c]`` multi-hot. Returns ``[n_a, n_b]``.
  """
  return (labels_a @ labels_b.T > 0).astype(jnp.float32)


def pairwise_likelihood(a: Array, b: Array, similarity: Array, *, s: float = 1.0,
                        half: bool = False, reduction: str = "paper",
                        counts: Optional[Array] = None) -> Array:
  """Negative log-likelihood of pairwise similarities, SPEC §2.

  ``Θ_ij = c · a_i·b_j`` with ``c = ½`` if ``half`` (the code) else 1 (the paper), and
  ``loss_ij = log(1 + exp(Θ_ij)) − s·S_ij·Θ_ij``, computed as ``softplus(Θ) − s·S·Θ`` so that
  large inner products neither overflow nor lose precision.

  Args:
    a: ``[B, d]`` batch side (carries the gradient).
    b: ``[n, d]`` all-training-points side (treated as a constant by the caller).
    similarity: ``[B, n]`` values of ``S`` (0/1).
    s: scale of ``S`` (ImageNet 5; code: NUS-WIDE 0.999, MS-COCO 0.8).
    half: use the code's ½ factor in ``Θ``.
    reduction: ``"paper"``: ``Σ_j`` then mean over the batch; ``"code"``: mean over ``B×n``.
    counts: ``[n]`` optional multiplicities of ``b``'s rows: row ``j`` stands for
      ``counts[j]`` training points with the same ``b_j`` and the same labels (its column
      of ``S``), so ``n = Σ_j counts[j]``; rows of count 0 are padding. The loss equals
      the one over the repeated rows (:func:`dseh_jax.train_steps.group_rows`).
  Returns: a scalar.

  The gradient is written by hand (:func:`_pair_nll_sum`): one pass over ``Θ`` gives the
  loss and ``∂loss/∂Θ = c·(σ(Θ) − s·S)``, and ``∂/∂a`` is one matrix product.
  """
  check_reduction(reduction)
  n = b.shape[0] if counts is None else jnp.sum(counts)
  total = _pair_nll_sum(a, b, similarity, counts, 0.5 if half else 1.0, float(s))
  if reduction == "paper":
    return total / a.shape[0]
  return total / (a.shape[0] * n)


def _pair_terms(theta: Array, similarity: Array, s: float) -> tuple[Array, Array]:
  """``(softplus(Θ) − s·S·Θ, σ(Θ) − s·S)`` from one ``exp(−|Θ|)`` per element."""
  e = jnp.exp(-jnp.abs(theta))
  nll = jnp.maximum(theta, 0.0) + jnp.log1p(e) - s * similarity * theta
  sigma = jnp.where(theta >= 0, 1.0, e) / (1.0 + e)
  return nll, sigma - s * similarity


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _pair_nll_sum(a, b, similarity, counts, scale, s):
  """``Σ_ij w_j·(softplus(Θ_ij) − s·S_ij·Θ_ij)``, ``Θ = scale·a bᵀ``, ``w = counts`` or 1."""
  return _pair_nll_fwd(a, b, similarity, counts, scale, s)[0]


def _pair_nll_fwd(a, b, similarity, counts, scale, s):
  theta = scale * (a @ b.T)
  nll, dtheta = _pair_terms(theta, similarity, s)
  if counts is not None:
    nll, dtheta = nll * counts, dtheta * counts
  return jnp.sum(nll), (a, b, similarity, counts, theta, scale * dtheta)


def _pair_nll_bwd(scale, s, residuals, g):
  a, b, similarity, counts, theta, dtheta = residuals
  w = 1.0 if counts is None else counts
  # Unused cotangents (b, S and counts are constants of the training steps) are dead code
  # under jit and cost nothing there.
  d_counts = None if counts is None else g * jnp.sum(_pair_terms(theta, similarity, s)[0], 0)
  return (g * (dtheta @ b), g * (dtheta.T @ a), -g * s * theta * w, d_counts)


_pair_nll_sum.defvjp(_pair_nll_fwd, _pair_nll_bwd)


def quantization_loss(codes: Array, *, reduction: str = "paper") -> Array:
  """J3 = ``Σ_i ‖ |h_i| − 1 ‖_1`` (SPEC §3). ``codes``: ``[B, K]``.

  ``"paper"``: sum over bits, mean over the batch; ``"code"``: 0.01 × mean over elements.
  """
  check_reduction(reduction)
  gap = jnp.abs(jnp.abs(codes) - 1.0)
  if reduction == "paper":
    return jnp.mean(jnp.sum(gap, axis=1))
  return 0.01 * jnp.mean(gap)


def reconstruction_loss(labels: Array, label_pred: Array, *, reduction: str = "paper") -> Array:
  """J4 = ``Σ_i ‖ y_i − ŷ_i ‖²`` (SPEC §3). ``labels``, ``label_pred``: ``[B, c]``.

  ``"paper"``: sum over classes, mean over the batch; ``"code"``: ½ × mean over elements.
  """
  check_reduction(reduction)
  sq = jnp.square(labels - label_pred)
  if reduction == "paper":
    return jnp.mean(jnp.sum(sq, axis=1))
  return 0.5 * jnp.mean(sq)


def sigmoid_cross_entropy(logits: Array, targets: Array, *, logit_scale: float = 1.0,
                          target_factor: float = 1.0, reduction: str = "paper") -> Array:
  """ImgNet's J2 (SPEC §4): cross-entropy between ``σ(scale·z)`` and ``factor·h'``.

  Computed as ``softplus(x) − t·x`` with ``x = scale·z`` (stable for any ``|x|``).
  Args: ``logits [B, K]`` (z^v), ``targets [B, K]`` in {0, 1} (h' = (sign(h^l)+1)/2).
  Paper: scale 1, factor 1; code: scale 10, factor 0.999.
  ``"paper"``: sum over bits, mean over the batch; ``"code"``: mean over elements.
  """
  check_reduction(reduction)
  x = logit_scale * logits
  t = target_factor * targets
  ce = jax.nn.softplus(x) - t * x
  if reduction == "paper":
    return jnp.mean(jnp.sum(ce, axis=1))
  return jnp.mean(ce)


def labnet_loss(semantic: Array, codes: Array, label_pred: Array, labels: Array,
                all_semantic: Array, all_codes: Array, all_labels: Array, *,
                weights: Mapping[str, float], s: float, half: bool,
                reduction: str) -> tuple[Array, dict[str, Array]]:
  """LabNet's loss, SPEC §3 eq. 11: ``w1·J1 + w2·J2 + w3·J3 + w4·J4``.

  Paper weights: ``j1=1, j2=α=1, j3=β=0.005, j4=γ=1``; code: all 1 (ImageNet: j1=0, j4=0.1).

  Args:
    semantic, codes, label_pred: LabNet outputs for the batch, ``[B, 512]``, ``[B, K]``,
      ``[B, c]``.
    labels: ``[B, c]`` the batch's labels.
    all_semantic, all_codes, all_labels: the buffers over all training points,
      ``[n, 512]``, ``[n, K]``, ``[n, c]`` (constants).
  Returns: ``(total, {"j1", "j2", "j3", "j4"})``.
  """
  sim = label_similarity(labels, all_labels)
  terms = {
      "j1": pairwise_likelihood(semantic, all_semantic, sim, s=s, half=half,
                                reduction=reduction),
      "j2": pairwise_likelihood(codes, all_codes, sim, s=s, half=half, reduction=reduction),
      "j3": quantization_loss(codes, reduction=reduction),
      "j4": reconstruction_loss(labels, label_pred, reduction=reduction),
  }
  return _weighted_sum(terms, weights), terms


def imgnet_loss(semantic: Array, hash_logits: Array, labels: Array, target_bits: Array,
                all_semantic: Array, all_labels: Array, *, weights: Mapping[str, float],
                s: float, half: bool, logit_scale: float, target_factor: float,
                reduction: str, all_counts: Optional[Array] = None
                ) -> tuple[Array, dict[str, Array]]:
  """ImgNet's loss, SPEC §4 eq. 14: ``w1·J1 + η·J2``.

  Args:
    semantic, hash_logits: ImgNet outputs for the batch, ``[B, 512]``, ``[B, K]``.
    labels: ``[B, c]``; target_bits: ``[B, K]`` LabNet's codes in {0, 1} for the batch.
    all_semantic: ``[n, 512]`` LabNet's semantic features of all training points;
    all_labels: ``[n, c]``.
    weights: ``{"j1": 1 (0 for DSEH-S), "j2": η}``.
    all_counts: ``None`` or ``[u]`` multiplicities of distinct ``(all_semantic, all_labels)``
      rows (``pairwise_likelihood``'s ``counts``).
  Returns: ``(total, {"j1", "j2"})``.
  """
  sim = label_similarity(labels, all_labels)
  terms = {
      "j1": pairwise_likelihood(semantic, all_semantic, sim, s=s, half=half,
                                reduction=reduction, counts=all_counts),
      "j2": sigmoid_cross_entropy(hash_logits, target_bits, logit_scale=logit_scale,
                                  target_factor=target_factor, reduction=reduction),
  }
  return _weighted_sum(terms, weights), terms


def _weighted_sum(terms: Mapping[str, Array], weights: Mapping[str, float]) -> Array:
  unknown = set(weights) - set(terms)
  if unknown:
    raise ValueError(f"loss weights {sorted(unknown)} name no term; terms are {sorted(terms)}")
  return sum(weights.get(name, 1.0) * value for name, value in terms.items())
