"""Optimisers for LabNet and ImgNet (SPEC §5).

An optimiser here is ``clip → (Adam | SGD-momentum) → per-group multiplier → −lr(step)``:

* optional element-wise gradient clipping to ``[−clip, clip]`` (code: 1);
* Adam (code) or SGD with momentum (paper);
* ``optax.partition`` over a parameter mask that labels ImgNet's pretrained backbone
  ``"pretrained"`` and every from-scratch layer ``"new"``; each group's updates are scaled
  by its multiplier (paper: new layers 10× the pretrained ones);
* the step-size schedule: the learning rate divided by ``decay_factor`` (code: √10) every
  ``decay_every`` epochs of a round and once more at every new round.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import optax

Array = jax.Array

PRETRAINED = "pretrained"
NEW = "new"


def param_group_labels(params: Any) -> Any:
  """Labels every leaf of ``params``: ``"pretrained"`` under ``backbone``, else ``"new"``.

  ``params`` is the parameter tree itself (``variables["params"]``), not the variables.
  """
  if isinstance(params, dict) and set(params) == {"params"}:
    raise ValueError("param_group_labels got a variables dict; pass variables['params']")
  def label(path, _):
    top = path[0].key if path and hasattr(path[0], "key") else None
    return PRETRAINED if top == "backbone" else NEW
  return jax.tree_util.tree_map_with_path(label, params)


def round_epoch_schedule(base_lr: float, steps_per_epoch: int,
                         epochs_per_round: Sequence[int], *, decay_every: int = 10,
                         decay_factor: float = math.sqrt(10.0),
                         decay_each_round: bool = True) -> Callable[[Array], Array]:
  """Step → learning rate for a network trained for ``epochs_per_round[r]`` epochs in round r.

  ``lr = base_lr / decay_factor ** (floor(e / decay_every) + [r if decay_each_round])`` at
  epoch ``e`` of round ``r``; the step counter counts only this network's steps.
  """
  if steps_per_epoch < 1:
    raise ValueError(f"steps_per_epoch={steps_per_epoch}; expected >= 1")
  # Round r starts at step round_starts[r]; steps past the last round keep its last rate.
  round_starts = np.concatenate([[0], np.cumsum(epochs_per_round)[:-1]]) * steps_per_epoch
  round_starts = jnp.asarray(round_starts, jnp.int32)

  def schedule(count):
    count = jnp.asarray(count, jnp.int32)
    r = jnp.searchsorted(round_starts, count, side="right") - 1
    epoch = (count - round_starts[r]) // steps_per_epoch
    exponent = epoch // decay_every + (r if decay_each_round else 0)
    return base_lr * jnp.power(1.0 / decay_factor, exponent.astype(jnp.float32))

  return schedule


def make_optimizer(*, name: str, schedule: Callable[[Array], Array] | float,
                   group_multipliers: Mapping[str, float], clip: float | None = None,
                   momentum: float = 0.9, b1: float = 0.9, b2: float = 0.999,
                   eps: float = 1e-8, weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Builds the optimiser described in the module docstring.

  Args:
    name: ``"adam"`` or ``"sgd"`` (SGD with ``momentum``; 0 gives plain SGD).
    schedule: learning rate, or a function of this optimiser's step count.
    group_multipliers: ``{"pretrained": m_p, "new": m_n}`` (paper 1 and 10; code 0.1 and 1).
    clip: clip every gradient element to ``[−clip, clip]`` before the update; ``None``: off.
    weight_decay: L2 added to the gradient (after clipping), 0: off.
  """
  missing = {PRETRAINED, NEW} - set(group_multipliers)
  if missing:
    raise ValueError(f"group_multipliers lacks {sorted(missing)}")
  parts = []
  if clip is not None:
    parts.append(optax.clip(clip))
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay))
  if name == "adam":
    parts.append(scale_by_adam(b1=b1, b2=b2, eps=eps))
  elif name == "sgd":
    if momentum:
      parts.append(optax.trace(decay=momentum))
  else:
    raise ValueError(f"optimizer name={name!r}; expected 'adam' or 'sgd'")
  parts.append(optax.partition(
      {group: optax.scale(float(mult)) for group, mult in group_multipliers.items()},
      param_group_labels))
  parts.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*parts)


def scale_by_adam(*, b1: float = 0.9, b2: float = 0.999,
                  eps: float = 1e-8) -> optax.GradientTransformation:
  """``optax.scale_by_adam`` (same state, same arithmetic) with the new moments stored
  before the step reads them.

  Without the ``lax.optimization_barrier``, XLA on CPU fuses the two moment updates into
  the step's computation as well as writing them out: each parameter-sized array is then
  read and written about twice as often, and with donated buffers it copies the old
  moments first. Adam's share of LabNet's NUS-WIDE-sized step went from 3.4 to 2.3 ms
  on 2 CPU cores (XLA's profile of the step).
  """
  base = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    mu, nu = lax.optimization_barrier((mu, nu))
    count = optax.safe_increment(state.count)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    updates = jax.tree_util.tree_map(lambda m, v: m / (jnp.sqrt(v) + eps), mu_hat, nu_hat)
    return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(base.init, update_fn)
