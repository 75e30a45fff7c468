"""One-network methods with a pairwise loss against a bank of every training point's
latest outputs (DPSH style; SPEC §8 baselines): DPSH, DHN, HashNet.

The image network is DSEH's ImgNet (``config.imgnet``: backbone, semantic layer, hash
layer, optimiser, batch size, augmentation) trained for ``sum(imgnet.epochs_per_round)``
epochs in one phase. The bank starts as the network's outputs over the training set and
each step overwrites the batch's rows before the loss (as LabNet's buffers, SPEC §3). A
method gives its loss (a function of :mod:`dseh_jax.baseline_losses`), the activation of
the bank's outputs and its hyper-parameters (``config.<name>``).
"""
from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
import ml_collections
import numpy as np

from dseh_jax import train_steps as ts
from dseh_jax.methods import base


class PairwiseBankMethod(base.Method):
  """Subclasses set :attr:`name`, :attr:`loss` and :attr:`activation`, and may override
  :meth:`loss_kwargs` (per-step values such as HashNet's β)."""
  evolving = True
  loss: Callable[..., Any] = staticmethod(lambda **kw: None)
  activation: Callable[[Any], Any] = staticmethod(lambda z: z)   # hash logits → u

  def loss_kwargs(self, settings: dict[str, Any], state) -> dict[str, Any]:
    """The loss's keyword arguments at ``state`` (``settings`` = ``config.<name>``)."""
    return dict(settings)

  def objective(self, config: ml_collections.ConfigDict, network: str) -> Callable:
    settings = config[self.name].to_dict()

    def objective(params, *, state, bank, batch, keys, axis_name, flip, max_shift):
      out = ts.train_forward(params, state, batch, keys, flip=flip, max_shift=max_shift)
      u = self.activation(out.hash_logits)
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

