"""DSDH (Li, Sun, He, Tan, NIPS 2017): pairwise likelihood of the outputs ``U`` against the
bank + η × their distance to discrete codes ``B``, which a linear classifier ``W`` of the
labels and ``U`` shape in closed form (:func:`dsdh_loss`, :func:`dsdh_update`).

The hand-off (:class:`DSDHBank`: ``U``, ``B``, ``W``) evolves and is checkpointed. As the
paper's Algorithm 1 alternates a pass of the network with the W and B steps, ``W`` and ``B``
are recomputed from the bank at the first step of every epoch (``dcc_iterations`` rounds of
a W then a B step; the first from ``B = sign(U₀)``, ``U₀ ~ N(0, 1)``). ``config.dsdh``:
``mu`` (classification weight), ``nu`` (ridge on ``W``), ``eta`` (quantisation weight),
``dcc_iterations``, ``reduction`` (``"paper"``: the paper's sums, η against ``Σ_j``).

Defaults: the paper's ν = 0.1, η = 55, and μ = 100 η. A bit flip in the B step changes the
label fit by ``O(μ ‖w_k‖)``, ``‖w_k‖ ≲ 1``, and the quantisation by ``4 η |u_ik|``: at the
paper's μ = 1 the labels never win (``B = sign(U)``, DPSH with a stale sign) and the digits'
codes collapse (nh = 1). On a digits validation split (32 bits) μ = 1, 55, 550, 5500,
55000, 550000 scored tie-aware MAP .45, .50, .73, .92, .90, .90.
"""
from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from dseh_jax import baseline_losses, losses, networks
from dseh_jax import train_steps as ts
from dseh_jax.methods import base
from dseh_jax.methods.pairwise import PairwiseBankMethod

Array = jax.Array


class DSDHBank(struct.PyTreeNode):
  """U ``[n, K]`` (latest outputs), Y ``[n, c]``, B ``[n, K]`` ±1, W ``[K, c]``: Y ≈ B W."""
  codes: Array
  labels: Array
  binary: Array
  classifier: Array
  SAVED: ClassVar[tuple[str, ...]] = ("codes", "binary", "classifier")


def dsdh_loss(*, u: Array, labels: Array, bank_u: Array, bank_labels: Array, binary: Array,
              eta: float, reduction: str = "mean") -> tuple[Array, dict[str, Array]]:
  """The network's part of DSDH (Li et al., NIPS 2017, "Deep Supervised Discrete
  Hashing", with B and W fixed), minimised::

    Θ_ij = ½ u_iᵀ u_j,   L = Σ_ij (log(1 + e^Θ_ij) − S_ij Θ_ij) + η Σ_i ‖b_i − u_i‖²,

  ``S_ij = 1`` iff the label sets intersect (``μ Σ_i ‖y_i − Wᵀ b_i‖² + ν‖W‖²`` has no
  gradient here). Args: ``u [b, K]``, ``labels [b, c]``, ``bank_u [n, K]`` (a constant),
  ``bank_labels [n, c]``, ``binary [b, K]`` the batch's rows of B; ``reduction`` as in
  :mod:`dseh_jax.baseline_losses`. Returns ``(likelihood + η·quantization, terms)``.
  """
  losses.check_reduction(reduction, baseline_losses.REDUCTIONS)
  sim = losses.label_similarity(labels.astype(jnp.float32), bank_labels.astype(jnp.float32))
  theta = 0.5 * u @ lax.stop_gradient(bank_u).T
  nll = jax.nn.softplus(theta) - sim.astype(u.dtype) * theta
  quant = jnp.square(lax.stop_gradient(binary).astype(u.dtype) - u)
  mean = jnp.mean if reduction == "mean" else lambda x: jnp.mean(jnp.sum(x, axis=1))
  terms = {"likelihood": mean(nll), "quantization": mean(quant)}
  return terms["likelihood"] + eta * terms["quantization"], terms


def dsdh_classifier(binary: Array, labels: Array, *, mu: float, nu: float) -> Array:
  """The W step: ``argmin_W μ‖Y − B W‖² + ν‖W‖² = (μ BᵀB + ν I)⁻¹ μ Bᵀ Y`` (ridge);
  ``binary [n, K]``, ``labels [n, c]`` → ``[K, c]``."""
  b = jnp.asarray(binary)
  return jnp.linalg.solve(mu * (b.T @ b) + nu * jnp.eye(b.shape[1], dtype=b.dtype),
                          mu * (b.T @ labels.astype(b.dtype)))


def dsdh_codes(binary: Array, codes: Array, labels: Array, classifier: Array, *, mu: float,
               eta: float) -> Array:
  """The B step: a sweep of discrete cyclic coordinate descent over the bits of ``μ‖Y − B W‖²
  + η‖B − U‖²``, B ∈ {±1}: bit k in turn, the others fixed, is set to its exact minimiser
  ``sign(p_k − μ Σ_{l≠k} b_l (W Wᵀ)_lk)``, ``P = μ Y Wᵀ + η U`` (a zero keeps the bit), so
  the objective never rises. ``binary, codes [n, K]``, ``labels [n, c]``, W ``[K, c]``."""
  codes = jnp.asarray(codes)
  w = jnp.asarray(classifier, codes.dtype)
  p, gram = mu * (jnp.asarray(labels, codes.dtype) @ w.T) + eta * codes, mu * (w @ w.T)

  def bit(k, b):
    q = p[:, k] - b @ gram[:, k] + b[:, k] * gram[k, k]
    return b.at[:, k].set(jnp.where(q == 0, b[:, k], jnp.sign(q)))

  return lax.fori_loop(0, codes.shape[1], bit, jnp.asarray(binary, codes.dtype))


def dsdh_update(bank: DSDHBank, *, mu: float, nu: float, eta: float,
                iterations: int) -> DSDHBank:
  """``iterations`` rounds of the W step then the B step on the bank's U and Y."""
  def once(_, carry):
    binary, _ = carry
    w = dsdh_classifier(binary, bank.labels, mu=mu, nu=nu)
    return dsdh_codes(binary, bank.codes, bank.labels, w, mu=mu, eta=eta), w

  binary, w = lax.fori_loop(0, iterations, once, (bank.binary, bank.classifier))
  return bank.replace(binary=binary.astype(bank.binary.dtype),
                      classifier=w.astype(bank.classifier.dtype))


class DSDH(PairwiseBankMethod):
  name = "dsdh"

  def step_kwargs(self, config, data, network):
    every = networks.steps_per_epoch(len(data.train), config.imgnet.batch_size, network)
    return {**super().step_kwargs(config, data, network), "update_every": every}

  def objective(self, config, network):
    s = config.dsdh.to_dict()
    update = functools.partial(dsdh_update, mu=s["mu"], nu=s["nu"], eta=s["eta"],
                               iterations=int(s["dcc_iterations"]))

    def objective(params, *, state, bank, batch, keys, axis_name, flip, max_shift,
                  update_every):
      bank = lax.cond(state.step % update_every == 0, update, lambda b: b, bank)
      u = ts.train_forward(params, state, batch, keys, flip=flip,
                           max_shift=max_shift).hash_logits
      bank = ts.write_rows(bank, batch["index"], axis_name, codes=u)
      binary = bank.binary[batch["index"]]
      total, terms = dsdh_loss(u=u, labels=batch["labels"], bank_u=bank.codes, binary=binary,
                               bank_labels=bank.labels, eta=s["eta"], reduction=s["reduction"])
      agree = jnp.mean((jnp.where(u >= 0, 1.0, -1.0) == binary).astype(jnp.float32))
      return total, (terms, bank, {"code_agreement": agree})

    return objective

  def start_phase(self, run: base.RunContext, phase: base.Phase, states) -> DSDHBank:
    """U₀ ~ N(0, 1) (the other pairwise baselines' start), B₀ = sign(U₀), W₀ = 0."""
    u = base.initial_codes(run).astype(np.float32)
    return DSDHBank(u, run.train_labels, np.where(u >= 0, 1.0, -1.0).astype(np.float32),
                    np.zeros((run.num_bits, run.train_labels.shape[1]), np.float32))

  def handoff_template(self, run: base.RunContext, phase: base.Phase) -> DSDHBank:
    zeros = np.zeros((run.num_train, run.num_bits), np.float32)
    return DSDHBank(zeros, run.train_labels, zeros,
                    np.zeros((run.num_bits, run.train_labels.shape[1]), np.float32))


METHOD = DSDH()


def configure(config):
  return base.configure_section(config, "dsdh", {"mu": 5500.0, "nu": 0.1, "eta": 55.0,
                                                 "dcc_iterations": 3, "reduction": "paper"})
