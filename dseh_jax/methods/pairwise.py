"""One-network methods with a pairwise loss against a bank of every training point's
latest outputs (DPSH style; SPEC §8 baselines): DPSH, DHN, HashNet, DSH, DSDH.

The image network is DSEH's ImgNet (``config.imgnet``: backbone, semantic layer, hash
layer, optimiser, batch size, augmentation) trained for ``sum(imgnet.epochs_per_round)``
epochs in one phase. The bank starts as ``N(0, 1)`` draws and each step overwrites the
batch's rows before the loss (as LabNet's buffers, SPEC §3). A method gives its loss (a
function of :mod:`dseh_jax.baseline_losses`), the activation of the bank's outputs and its
hyper-parameters (``config.<name>``).

**Centred outputs** (``config.<name>.outputs = "centered"``, the default). A network trained
from scratch starts with outputs that share one direction (the embedded digits at
initialisation: mean cosine .88 between two images' hash logits, 86% of their energy in
the batch mean). Every pair then looks alike, and with fewer than half the pairs similar
the likelihood's gradient shrinks that shared part; the network does it by silencing its
semantic ReLUs, and the codes fall into the ``u = 0`` saddle (README "Methods": DPSH, DHN
and HashNet at chance level). The loss therefore reads the hash logits minus their batch
mean (over all devices), as batch normalisation centres without its scale: the gradient
reaching the network has no shared part. The loss does not depend on the hash layer's
bias then; at the phase's end the bias takes minus the training set's mean logits, so
that ``sign(z)`` of the trained network are the centred codes. ``"raw"``: the papers' form.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from dseh_jax import train_steps as ts
from dseh_jax.methods import base

OUTPUTS = ("centered", "raw")


def batch_centered(z: jax.Array, axis_name: Optional[str]) -> jax.Array:
  """``z [b, K]`` minus the mean over the global batch (every device's shard)."""
  mean = jnp.mean(z, axis=0)
  return z - (mean if axis_name is None else lax.pmean(mean, axis_name))


def _with_hash_bias(params, fn: Callable[[jax.Array], jax.Array]):
  """``params`` with the hash layer's bias replaced by ``fn(bias)`` (new containers)."""
  head = dict(params["head"])
  head["hash"] = {**head["hash"], "bias": fn(head["hash"]["bias"])}
  return {**params, "head": head}


def shift_hash_bias(state, shift: np.ndarray):
  """``state`` (replicated or not) with ``shift [K]`` added to the hash layer's bias."""
  return state.replace(params=_with_hash_bias(state.params, lambda b: b + shift))


class PairwiseBankMethod(base.Method):
  """Subclasses set :attr:`name`, :attr:`loss` and :attr:`activation`, and may override
  :meth:`loss_kwargs` (per-step values such as HashNet's β)."""
  evolving = True
  choices = {"outputs": OUTPUTS}
  loss: Callable[..., Any] = staticmethod(lambda **kw: None)
  activation: Callable[[Any], Any] = staticmethod(lambda z: z)   # hash logits → u

  def loss_kwargs(self, settings: dict[str, Any], state) -> dict[str, Any]:
    """The loss's keyword arguments at ``state`` (``settings`` = ``config.<name>``)."""
    return {k: v for k, v in settings.items() if k != "outputs"}

  def objective(self, config: ml_collections.ConfigDict, network: str) -> Callable:
    settings = config[self.name].to_dict()
    centered = settings.get("outputs", "raw") == "centered"

    def objective(params, *, state, bank, batch, keys, axis_name, flip, max_shift):
      if centered:     # the loss is blind to the bias: a zero gradient, not rounding noise
        params = _with_hash_bias(params, lax.stop_gradient)
      out = ts.train_forward(params, state, batch, keys, flip=flip, max_shift=max_shift)
      z = batch_centered(out.hash_logits, axis_name) if centered else out.hash_logits
      u = self.activation(z)
      bank = ts.write_rows(bank, batch["index"], axis_name, codes=u)
      total, terms = self.loss(u=u, labels=batch["labels"], bank_u=bank.codes,
                               bank_labels=bank.labels, **self.loss_kwargs(settings, state))
      balance = jnp.mean(jnp.abs(jnp.mean(jnp.sign(u), axis=0)))
      return total, (terms, bank, {"bit_balance": balance})

    return objective

  def start_phase(self, run: base.RunContext, phase: base.Phase, states) -> ts.CodeBank:
    """``N(0, 1)`` draws, as DSEH starts LabNet's buffers (SPEC §3)."""
    return ts.CodeBank(base.initial_codes(run).astype(np.float32), run.train_labels)

  def handoff_template(self, run: base.RunContext, phase: base.Phase) -> ts.CodeBank:
    return ts.CodeBank(np.zeros((run.num_train, run.num_bits), np.float32), run.train_labels)

  def end_phase(self, run: base.RunContext, phase: base.Phase, states, handoff):
    """With centred outputs, first moves the hash bias by minus the training set's mean
    logits (the loss was blind to it), then the summary of :class:`base.Method`."""
    if run.config[self.name].get("outputs", "raw") == "centered":
      logits = base.encode_splits(run, states[self.encoder], pop=True)[0].hash_logits
      shift = -np.mean(np.asarray(logits, np.float64), axis=0).astype(np.float32)
      states[self.encoder] = shift_hash_bias(states[self.encoder], shift)
    return super().end_phase(run, phase, states, handoff)
