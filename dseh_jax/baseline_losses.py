"""Losses of the deep baselines compared in the paper (SPEC §8): DPSH, DHN, HashNet, CNNH.

Pure, keyword-only JAX functions for a per-device batch. The pairwise losses use the
"bank" of DSEH (SPEC §3): the batch's outputs ``u [b, K]`` and labels ``[b, c]`` are paired
with the latest outputs ``bank_u [n, K]`` and labels ``bank_labels [n, c]`` of every
training point (DPSH-style), ``S_ij = 1`` iff the two label sets intersect. The bank is a
constant (``stop_gradient``); only the batch side carries the gradient.

``reduction`` (every loss):

* ``"mean"`` (default): pairwise terms averaged over the ``b × n`` pairs, per-bit terms
  averaged over the ``b × K`` elements (the normalisation of most public re-implementations;
  the weights η, λ are then on that scale);
* ``"paper"``: the papers' sums over pairs / points divided by the batch size ``b``
  (``Σ_j`` over the bank, ``Σ_k`` over bits, mean over the batch), which keeps the papers'
  relative weights exactly (DPSH's η, DHN's λ).

Both are means over the batch axis, so ``lax.pmean`` of per-shard values equals the value on
the whole batch (HashNet's class-balance counts are per call; see :func:`hashnet_loss`).
Each loss returns ``(total, {"term": value, ...})`` like :mod:`dseh_jax.losses`.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from dseh_jax import losses

Array = jax.Array

REDUCTIONS = ("mean", "paper")


def _check(reduction: str) -> None:
  losses.check_reduction(reduction, REDUCTIONS)


def _pair_mean(per_pair: Array, reduction: str) -> Array:
  """``[b, n]`` → scalar: mean over pairs, or ``Σ_j`` then mean over the batch."""
  return jnp.mean(per_pair) if reduction == "mean" else jnp.mean(jnp.sum(per_pair, axis=1))


def _bit_mean(per_bit: Array, reduction: str) -> Array:
  """``[b, K]`` → scalar: mean over elements, or ``Σ_k`` then mean over the batch."""
  return jnp.mean(per_bit) if reduction == "mean" else jnp.mean(jnp.sum(per_bit, axis=1))


def _similarity(labels: Array, bank_labels: Array) -> Array:
  return losses.label_similarity(labels.astype(jnp.float32), bank_labels.astype(jnp.float32))


def _nll(theta: Array, sim: Array) -> Array:
  """Per-pair ``log(1 + e^Θ) − S·Θ`` (stable softplus)."""
  return jax.nn.softplus(theta) - sim.astype(theta.dtype) * theta


# ----------------------------------------------------------------------------------- DPSH

def dpsh_loss(*, u: Array, labels: Array, bank_u: Array, bank_labels: Array, eta: float,
              reduction: str = "mean") -> tuple[Array, dict[str, Array]]:
  """DPSH (Li, Wang, Kang, IJCAI 2016, "Feature learning based deep supervised hashing
  with pairwise labels"), minimised::

    Θ_ij = ½ u_iᵀ u_j,   L = −Σ_ij (S_ij Θ_ij − log(1 + e^Θ_ij)) + η Σ_i ‖b_i − u_i‖²,

  ``b = sign(u)`` (``sign(0) = +1``, stop-gradient). Args: ``u [b, K]``, ``labels [b, c]``,
  ``bank_u [n, K]``, ``bank_labels [n, c]``. Returns ``(total, {"likelihood", "quantization"})``
  with ``total = likelihood + η·quantization`` (see the module doc for ``reduction``).
  """
  _check(reduction)
  sim = _similarity(labels, bank_labels)
  theta = 0.5 * u @ lax.stop_gradient(bank_u).T
  codes = lax.stop_gradient(jnp.where(u >= 0, 1.0, -1.0).astype(u.dtype))
  terms = {"likelihood": _pair_mean(_nll(theta, sim), reduction),
           "quantization": _bit_mean(jnp.square(codes - u), reduction)}
  return terms["likelihood"] + eta * terms["quantization"], terms


# ------------------------------------------------------------------------------------ DHN

def log_cosh(x: Array) -> Array:
  """``log cosh x = |x| + log(1 + e^{−2|x|}) − log 2``, finite for any ``x``."""
  ax = jnp.abs(x)
  return ax + jax.nn.softplus(-2.0 * ax) - math.log(2.0)


def dhn_loss(*, u: Array, labels: Array, bank_u: Array, bank_labels: Array, lam: float,
             theta_scale: float = 1.0, reduction: str = "mean"
             ) -> tuple[Array, dict[str, Array]]:
  """DHN (Zhu, Long, Wang, Cao, AAAI 2016, "Deep hashing network for efficient similarity
  retrieval"): pairwise cross-entropy + λ × bimodal-Laplacian quantisation (smoothed)::

    Θ_ij = s·z_iᵀ z_j,   L = Σ_ij (log(1 + e^Θ_ij) − S_ij Θ_ij) + λ Σ_i Σ_k log cosh(|z_ik| − 1).

  Choice of ``s`` (``theta_scale``): the paper's likelihood is ``σ(⟨z_i, z_j⟩)`` and the
  authors' Caffe layer (zhuhan1236/dhn-caffe, ``pairwise_loss_layer.cu``) uses the plain inner
  product, so the default is ``s = 1``; ``s = ½`` gives DPSH's form (the default ``alpha`` of
  the later TensorFlow DeepHash ``cross_entropy``, which also clips ``Θ`` to ±15, reweights
  pairs and uses ``(|z| − 1)²``: none of that is reproduced). Caffe's reduction is ``"mean"``.
  Args: ``u [b, K]`` (= z), ``labels [b, c]``, ``bank_u [n, K]``, ``bank_labels [n, c]``.
  Returns ``(total, {"likelihood", "quantization"})``, ``total = likelihood + λ·quantization``.
  """
  _check(reduction)
  sim = _similarity(labels, bank_labels)
  theta = theta_scale * (u @ lax.stop_gradient(bank_u).T)
  terms = {"likelihood": _pair_mean(_nll(theta, sim), reduction),
           "quantization": _bit_mean(log_cosh(jnp.abs(u) - 1.0), reduction)}
  return terms["likelihood"] + lam * terms["quantization"], terms


# -------------------------------------------------------------------------------- HashNet

def hashnet_beta(step, *, gamma: float = 0.005, power: float = 0.5, step_size: int = 200,
                 init_scale: float = 1.0) -> Array:
  """HashNet's continuation ``β_t = β_0 (1 + γ t)^p`` (Cao et al., ICCV 2017).

  As in the authors' PyTorch code (``network.py``: ``step_size = 200, gamma = 0.005,
  power = 0.5, init_scale = 1``), β is raised only every ``step_size`` steps:
  ``t = ⌊step / step_size⌋ · step_size``; ``step_size = 1`` raises it every step. The code's
  ``iter_num`` counts from 1 at the first update (pass ``state.step + 1`` to match it).
  ``step`` may be traced; returns a float32 scalar, non-decreasing in ``step``.
  """
  step = jnp.asarray(step)
  t = (step // step_size) * step_size
  return init_scale * jnp.power(1.0 + gamma * t.astype(jnp.float32), power)


def hashnet_pair_weights(similarity: Array) -> Array:
  """HashNet's class-balance weights: ``|S|/|S_1|`` on similar and ``|S|/|S_0|`` on
  dissimilar pairs, counted over the given pairs ``[b, n]`` (0/1). A per-pair factor for
  graded multi-label similarity (not in the released code) is taken as 1.

  Each class of pairs gets total weight ``|S|`` (so ``Σ w = 2|S|`` when both occur). An empty
  class is guarded (its weight is unused). Returns ``[b, n]``, a constant.
  """
  sim = lax.stop_gradient(similarity).astype(jnp.float32)
  total = jnp.asarray(sim.size, jnp.float32)
  n_sim = jnp.sum(sim)
  n_dis = total - n_sim
  return jnp.where(sim > 0, total / jnp.maximum(n_sim, 1.0), total / jnp.maximum(n_dis, 1.0))


def hashnet_loss(*, u: Array, labels: Array, bank_u: Array, bank_labels: Array, beta,
                 alpha: Optional[float] = None, reduction: str = "mean"
                 ) -> tuple[Array, dict[str, Array]]:
  """HashNet (Cao, Long, Wang, Yu, ICCV 2017, "HashNet: deep learning to hash by
  continuation"), weighted maximum likelihood::

    h = tanh(β z),  Θ_ij = α ⟨h_i, h_j⟩,  L = Σ_ij w_ij (log(1 + e^Θ_ij) − S_ij Θ_ij),

  ``w`` from :func:`hashnet_pair_weights` over this call's ``b × n`` pairs (with sharding
  each device uses its own counts, as the authors do per batch). ``"mean"`` divides by
  ``b·n = |S|``, i.e. mean over similar pairs + mean over dissimilar pairs.

  Args:
    u: ``[b, K]`` pre-activations ``z`` of the hash layer; bank_u: ``[n, K]`` the bank's
      ``z`` (``tanh(β ·)`` is applied to both sides with the current β).
    labels, bank_labels: ``[b, c]``, ``[n, c]``.
    beta: the continuation scale (a traced scalar is fine), see :func:`hashnet_beta`.
    alpha: the "sigmoid parameter"; ``None`` → ``10 / K`` (the authors' ``train.py``).
  Not reproduced: the PyTorch code's fixed positive weight ``class_num`` and its linear
  branch for ``Θ > 15`` (softplus is exact and stable here).
  Returns ``(total, {"likelihood"})``.
  """
  _check(reduction)
  alpha = 10.0 / u.shape[-1] if alpha is None else alpha
  sim = _similarity(labels, bank_labels)
  h = jnp.tanh(beta * u)
  bank_h = jnp.tanh(beta * lax.stop_gradient(bank_u))
  theta = alpha * (h @ bank_h.T)
  per_pair = hashnet_pair_weights(sim) * _nll(theta, sim)
  terms = {"likelihood": _pair_mean(per_pair, reduction)}
  return terms["likelihood"], terms


# ----------------------------------------------------------------------------------- CNNH

def cnnh_stage1_objective(similarity: Array, codes: Array) -> Array:
  """``‖S̃ − (1/q) H Hᵀ‖_F²`` with ``S̃ = 2S − 1``. ``similarity [n, n]`` 0/1, ``codes [n, q]``."""
  q = codes.shape[1]
  resid = (2.0 * similarity - 1.0) - codes @ codes.T / q
  return jnp.sum(jnp.square(resid))


def _top_eigenpairs(a: Array, p: int, key: Array, power_iters: int = 6) -> tuple[Array, Array]:
  """Approximate top-``p`` algebraic eigenpairs of symmetric ``a [n, n]``: randomised subspace
  iteration on ``[n, p + 10]`` columns, then Rayleigh–Ritz. Returns ``(λ [p], U [n, p])``,
  descending, with ``Uᵀ a U = diag(λ)``."""
  n = a.shape[0]
  m = min(n, p + 10)
  x = jnp.linalg.qr(a @ jax.random.normal(key, (n, m), a.dtype))[0]
  x = lax.fori_loop(0, power_iters, lambda _, v: jnp.linalg.qr(a @ v)[0], x)
  evals, evecs = jnp.linalg.eigh(x.T @ (a @ x))   # ascending
  return evals[::-1][:p], (x @ evecs[:, ::-1])[:, :p]


@functools.partial(jax.jit, static_argnames=("bits", "inner_steps", "candidates", "init"))
def cnnh_stage1_codes(similarity: Array, bits: int, *, key: Array, iterations=10,
                      inner_steps: int = 3, candidates: int = 8, init: str = "spectral"
                      ) -> Array:
  """CNNH stage 1 (Xia, Pan, Lai, Liu, Yan, AAAI 2014): approximate codes
  ``H ∈ {−1, +1}^{n×q}`` minimising ``‖S̃ − (1/q) H Hᵀ‖_F²``, ``S̃ = 2S − 1``.

  Documented equivalent of the paper's randomised coordinate descent (which relaxes ``H``
  to real values, updates one entry at a time, then takes the sign):

  1. relax, then sign (``init="spectral"``): the real minimiser is ``Z = √q U Λ^½`` (top-q
     eigenpairs of ``S̃``, any rotation); ``H₀ = sign(Z Q)`` with a random rotation ``Q``.
     ``init="random"``: uniform ±1 (worse local optima on multi-label ``S``).
  2. discrete block coordinate descent over columns: each of ``iterations`` sweeps visits
     the ``q`` columns in a random order; with the others fixed, column ``h`` minimises
     ``‖R − h hᵀ‖²``, ``R = q S̃ − Σ_{l≠k} h_l h_lᵀ``, i.e. maximises ``hᵀ R h``. Candidates:
     signs of the relaxed maximiser within the top eigen-subspace ``U`` of ``S̃`` (top
     eigenvector of ``Uᵀ R U``, plus ``candidates − 1`` random-hyperplane roundings of its
     top-4 eigenspace; the best is taken), then up to ``inner_steps`` steps ``h ← sign(R h)``
     (ties keep the bit); each is kept only if ``hᵀ R h`` rises, so the objective never
     increases (exactly, up to float32 sums).

  ``key`` seeds ``Q``, the subspace iteration, the roundings and the column orders.
  Args: ``similarity [n, n]`` symmetric 0/1 (``S_ii`` any); ``bits`` = q (static);
  ``iterations`` sweeps (may be traced). Cost per sweep: ``q`` products ``S̃ [n, candidates]``
  and ``≤ q·(inner_steps + 1)`` products ``S̃ v`` (``O(n²)`` each), plus ~8 products
  ``S̃ [n, q+10]`` once for ``U``; memory one
  ``[n, n]`` float32 (441 MB at n = 10,500). Returns ``H [n, q]`` float32 in {−1, +1}.
  """
  s_tilde = 2.0 * similarity.astype(jnp.float32) - 1.0
  sq = bits * s_tilde
  n = sq.shape[0]
  key_eig, key_init, key_order, key_cand = jax.random.split(key, 4)
  p = min(n, bits)
  t = min(p, 4)
  evals, basis = _top_eigenpairs(s_tilde, p, key_eig)
  if init == "spectral":
    z = basis * jnp.sqrt(jnp.maximum(evals, 0.0))               # [n, p], p = min(n, q)
    rot = jnp.linalg.qr(jax.random.normal(key_init, (bits, bits), z.dtype))[0][:p]
    codes = jnp.where(z @ rot >= 0, 1.0, -1.0)
  elif init == "random":
    codes = jnp.where(jax.random.bernoulli(key_init, 0.5, (n, bits)), 1.0, -1.0)
  else:
    raise ValueError(f"init={init!r}; expected 'spectral' or 'random'")

  def update_column(it, k, codes):
    old = codes[:, k]

    def apply_r(v):  # R v without forming R
      return sq @ v - codes @ (codes.T @ v) + jnp.outer(old, old @ v).reshape(v.shape)

    def gains(h, rh, cands):  # [m] = cᵀR c − hᵀR h for each column c of cands (R symmetric)
      r_c = apply_r(cands)
      return jnp.sum((cands - h[:, None]) * (rh[:, None] + r_c), axis=0), r_c

    def try_candidate(h, rh, cand):
      gain, r_cand = gains(h, rh, cand[:, None])
      better = gain[0] > 0
      return better, jnp.where(better, cand, h), jnp.where(better, r_cand[:, 0], rh)

    # relaxed candidates within U: top eigenvector of Uᵀ R U = qΛ − (UᵀH)(UᵀH)ᵀ + (Uᵀh)(Uᵀh)ᵀ
    # and random-hyperplane roundings of its top-t eigenspace; the best is kept if it helps.
    uh, uo = basis.T @ codes, basis.T @ old
    w, y = jnp.linalg.eigh(bits * jnp.diag(evals) - uh @ uh.T + jnp.outer(uo, uo))
    top = y[:, ::-1][:, :t] * jnp.sqrt(jnp.maximum(w[::-1][:t], 0.0))
    mix = jax.random.normal(jax.random.fold_in(key_cand, k + bits * it), (t, candidates - 1))
    v = basis @ (top @ jnp.concatenate([jnp.eye(t, 1), mix], axis=1))
    cands = jnp.where(v == 0, old[:, None], jnp.sign(v))
    r_old = apply_r(old)
    gain, r_c = gains(old, r_old, cands)
    best = jnp.argmax(gain)
    better = gain[best] > 0
    h, rh = jnp.where(better, cands[:, best], old), jnp.where(better, r_c[:, best], r_old)

    def body(carry):
      i, _, h, rh = carry
      return (i + 1, *try_candidate(h, rh, jnp.where(rh == 0, h, jnp.sign(rh))))

    _, _, h, _ = lax.while_loop(lambda c: (c[0] < inner_steps) & c[1], body,
                                (0, jnp.array(True), h, rh))
    return codes.at[:, k].set(h)

  def sweep(it, codes):
    order = jax.random.permutation(jax.random.fold_in(key_order, it), bits)
    return lax.fori_loop(0, bits, lambda j, c: update_column(it, order[j], c), codes)

  return lax.fori_loop(0, iterations, sweep, codes)


def cnnh_loss(*, outputs: Array, targets: Array, label_outputs: Optional[Array] = None,
              labels: Optional[Array] = None, label_weight: float = 1.0,
              reduction: str = "mean") -> tuple[Array, dict[str, Array]]:
  """CNNH stage 2 (Xia et al., AAAI 2014): regress the stage-1 codes,
  ``L = Σ_i ‖o_i − H_i‖² [+ w Σ_i ‖ŷ_i − y_i‖²]`` (the bracket: the paper's variant with the
  class labels as extra outputs, CNNH+, used when ``label_outputs`` is given).

  Args: ``outputs [b, q]``, ``targets [b, q]`` the stage-1 codes of the batch, in the range of
  the outputs (±1 for tanh, ``(H + 1)/2`` for sigmoid); ``label_outputs``, ``labels [b, c]``.
  Returns ``(total, {"codes"[, "labels"]})``.
  """
  _check(reduction)
  terms = {"codes": _bit_mean(jnp.square(outputs - targets), reduction)}
  total = terms["codes"]
  if label_outputs is not None:
    if labels is None:
      raise ValueError("label_outputs needs labels")
    terms["labels"] = _bit_mean(jnp.square(label_outputs - labels.astype(label_outputs.dtype)),
                                reduction)
    total = total + label_weight * terms["labels"]
  return total, terms
