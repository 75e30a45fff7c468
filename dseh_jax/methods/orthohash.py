"""OrthoHash (Hoe, Ng, Gupta, Yeung, Chan, NeurIPS 2021): one cosine-similarity softmax
of the hash logits against fixed, orthogonal class codes (:func:`orthohash_loss`).

The hand-off is :class:`dseh_jax.methods.centers.ClassCodes`, the ``[c, K]`` class codes
(Hadamard rows by default, as the paper), drawn from the run's key at the phase's start:
constant, rebuilt the same on resume. The codes are ``sign(z)``. ``config.orthohash``:
``scale`` (s = 8) and ``margin`` (m = 0.2), the paper's defaults; ``quant`` (0, the
paper's default weight of its quantisation term); ``classification`` (``"softmax"``,
below); ``centers`` (``"hadamard"``; ``"random"``) and ``reduction``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from dseh_jax.methods import base, centers

Array = jax.Array
CLASSIFICATIONS = ("softmax", "sigmoid")


def _unit(x: Array) -> Array:
  """Rows of ``x`` scaled to norm 1 (a zero row stays 0, with a finite gradient)."""
  return x / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), 1e-12))


def orthohash_loss(*, logits: Array, labels: Array, codes: Array, scale: float,
                   margin: float, quant: float = 0.0, classification: str = "softmax",
                   reduction: str = "mean") -> tuple[Array, dict[str, Array]]:
  """OrthoHash (Hoe et al., NeurIPS 2021, "One Loss for All: Deep Hashing with a Single
  Cosine Similarity based Learning Objective"), minimised::

    ℓ_c = s (cos(z, o_c) − m y_c),   L = CE(ℓ, y) + quant · (1 − cos(z, sign(z))),

  ``o_c`` the class codes, ``sign(z)`` stop-gradient (the authors' cosine quantisation
  term). ``CE``: ``"softmax"``, ``−Σ_c t_c log softmax(ℓ)_c`` with ``t = y / Σ_c y_c``: the
  paper's loss for one label per point, and for several the label distribution as a soft
  target (every positive class gets the margin); ``"sigmoid"``, ``Σ_c (log(1 + e^ℓ_c) −
  y_c ℓ_c)``, the binary cross-entropy of the paper's multi-label variant.

  Args: ``logits`` ``z [b, K]``, ``labels`` ``y [b, c]`` multi-hot, ``codes`` ``o [c, K]``.
  ``reduction`` matters only for ``"sigmoid"``: ``"mean"`` over the ``b × c`` classes,
  ``"paper"`` ``Σ_c`` then the mean over the batch; the other terms are per point, averaged
  over the batch. Returns ``(total, {"classification", "quantization"})``.
  """
  if classification not in CLASSIFICATIONS:
    raise ValueError(f"classification={classification!r}; expected one of {CLASSIFICATIONS}")
  labels = labels.astype(logits.dtype)
  cosine = _unit(logits) @ _unit(codes.astype(logits.dtype)).T           # [b, c]
  scaled = scale * (cosine - margin * labels)
  if classification == "softmax":
    target = labels / jnp.maximum(jnp.sum(labels, axis=1, keepdims=True), 1.0)
    ce = centers.reduce_bits(-jnp.sum(target * jax.nn.log_softmax(scaled), axis=1,
                                      keepdims=True), reduction)
  else:
    ce = centers.reduce_bits(jax.nn.softplus(scaled) - labels * scaled, reduction)
  signs = lax.stop_gradient(jnp.where(logits >= 0, 1.0, -1.0).astype(logits.dtype))
  quantization = jnp.mean(1.0 - jnp.sum(_unit(logits) * _unit(signs), axis=1))
  terms = {"classification": ce, "quantization": quantization}
  return ce + quant * quantization, terms


class OrthoHash(centers.CenterMethod):
  name = "orthohash"
  choices = {**centers.CenterMethod.choices, "classification": CLASSIFICATIONS}
  per_point = False

  def loss(self, logits, handoff, batch, **settings):
    return orthohash_loss(logits=logits, labels=batch["labels"], codes=handoff.codes,
                          **settings)


METHOD = OrthoHash()


def configure(config):
  return base.configure_section(config, "orthohash", {
      "scale": 8.0, "margin": 0.2, "quant": 0.0, "classification": "softmax",
      "centers": "hadamard", "reduction": "mean"})
