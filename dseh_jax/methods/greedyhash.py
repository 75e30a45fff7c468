"""GreedyHash (Su, Zhang, Yuan, Tian, NeurIPS 2018): the codes ``b = sign(h)`` in the
forward pass with the straight-through gradient ``∂L/∂h = ∂L/∂b``, a linear classifier on
``b`` trained with cross-entropy, and α × a cubic pull of ``|h|`` towards 1
(:func:`greedyhash_loss`).

``h`` is the hash layer's linear output; the codes are ``sign(h)``. The classifier is a
parameter entry ``params["classifier"]`` (``kernel [K, c]``, ``bias [c]``) beside ImgNet's
own: the forward pass ignores it, the optimiser puts it in the ``"new"`` group, and
checkpoints keep it. The phase has no hand-off. ``config.greedyhash``: ``alpha`` (0.1, as
the authors' code), ``classification`` (``"softmax"``: cross-entropy to the label set
normalised to sum 1, the paper's softmax for one label per point; ``"sigmoid"``: binary
cross-entropy per class) and ``reduction``.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from dseh_jax import baseline_losses, losses, networks
from dseh_jax import train_steps as ts
from dseh_jax.methods import base

Array = jax.Array
CLASSIFICATIONS = ("softmax", "sigmoid")


def straight_through_sign(h: Array) -> Array:
  """``sign(h)`` (``sign(0) = +1``) whose gradient is passed to ``h`` unchanged."""
  return h + lax.stop_gradient(jnp.where(h >= 0, 1.0, -1.0).astype(h.dtype) - h)


def greedyhash_loss(*, h: Array, labels: Array, kernel: Array, bias: Array, alpha: float,
                    classification: str = "softmax", reduction: str = "mean"
                    ) -> tuple[Array, dict[str, Array]]:
  """GreedyHash (Su et al., NeurIPS 2018, "Greedy Hash: Towards Fast Optimization for
  Accurate Hash Coding in CNN"), minimised::

    b = sign(h) (forward; backward ∂L/∂h = ∂L/∂b),   ŷ = b W + w₀,
    L = CE(ŷ, y) + α Σ_k ||h_k| − 1|³.

  ``CE``: ``"softmax"``, ``−Σ_c t_c log softmax(ŷ)_c`` with ``t = y / Σ_c y_c`` (one-hot
  labels give the paper's loss; an empty label set gives 0); ``"sigmoid"``, ``Σ_c
  (log(1 + e^ŷ_c) − y_c ŷ_c)``. ``reduction``: ``"mean"`` (the authors' code) averages
  the cubic term over the ``b × K`` elements (and the sigmoid one over ``b × c``),
  ``"paper"`` sums them over bits (classes); both average over the batch.

  Args: ``h [b, K]``, ``labels [b, c]``, ``kernel [K, c]``, ``bias [c]``. Returns
  ``(total, {"classification", "quantization"})``, ``total = classification +
  α·quantization``.
  """
  losses.check_reduction(reduction, baseline_losses.REDUCTIONS)
  if classification not in CLASSIFICATIONS:
    raise ValueError(f"classification={classification!r}; expected one of {CLASSIFICATIONS}")
  labels = labels.astype(h.dtype)
  logits = straight_through_sign(h) @ kernel.astype(h.dtype) + bias.astype(h.dtype)
  mean = jnp.mean if reduction == "mean" else lambda x: jnp.mean(jnp.sum(x, axis=1))
  if classification == "softmax":
    target = labels / jnp.maximum(jnp.sum(labels, axis=1, keepdims=True), 1.0)
    ce = jnp.mean(-jnp.sum(target * jax.nn.log_softmax(logits), axis=1))
  else:
    ce = mean(jax.nn.softplus(logits) - labels * logits)
  terms = {"classification": ce, "quantization": mean(jnp.abs(jnp.abs(h) - 1.0) ** 3)}
  return terms["classification"] + alpha * terms["quantization"], terms


class GreedyHash(base.Method):
  name = "greedyhash"
  choices = {"classification": CLASSIFICATIONS}

  def create_states(self, config, data, num_bits, keys):
    """ImgNet's state with ``params["classifier"]`` added (a dense layer ``K → c`` drawn
    from ``fold_in(keys[1], 1)``, so ImgNet's own initial weights are the other methods')."""
    state = networks.create_imgnet_state(config, data.input_shape, num_bits,
                                         len(data.train), keys[1])
    layer = nn.Dense(data.num_classes)
    head = networks.init_params(layer, jax.random.fold_in(keys[1], 1), (1, num_bits))
    params = {**state.params, "classifier": head}
    return {base.IMGNET: networks.new_state(state.apply_fn, params, state.tx)}

  def objective(self, config, network):
    s = config.greedyhash.to_dict()

    def objective(params, *, state, bank, batch, keys, axis_name, flip, max_shift):
      del axis_name                                  # no bank
      h = ts.train_forward(params, state, batch, keys, flip=flip,
                           max_shift=max_shift).hash_logits
      total, terms = greedyhash_loss(h=h, labels=batch["labels"], **params["classifier"],
                                     **s)
      balance = jnp.mean(jnp.abs(jnp.mean(jnp.where(h >= 0, 1.0, -1.0), axis=0)))
      return total, (terms, bank, {"bit_balance": balance})

    return objective

  def start_phase(self, run, phase, states):
    return None

  def handoff_template(self, run, phase):
    return None


METHOD = GreedyHash()


def configure(config):
  return base.configure_section(config, "greedyhash", {
      "alpha": 0.1, "classification": "softmax", "reduction": "mean"})
