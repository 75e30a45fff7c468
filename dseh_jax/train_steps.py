"""Pure, pmap-able training steps for LabNet and ImgNet (SPEC §3–§4), and the builder
:func:`make_train_step` that turns any method's objective into such a step.

Every step has the signature ``step(state, bank, batch, rng) -> (state, bank, metrics)``:

* ``state``: a ``flax.training.train_state.TrainState`` (params, optimiser state, step);
* ``bank``: a :class:`PointBank` of per-training-point tensors that live on the devices;
* ``batch``: ``{"inputs": [b, ...], "labels": [b, c], "index": [b]}``, the device's shard of
  the global batch (``index`` = rows of the training set);
* ``rng``: a ``[2]`` uint32 key for this step, the same on every device.

Under :func:`pmap_step` each device holds ``b = B / n_devices`` examples; gradients and
metrics are averaged with ``lax.pmean`` over ``axis_name``, and every device applies the
same update, so state and bank stay replicated. With ``axis_name=None`` a step runs on one
device under ``jax.jit`` with no collectives.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, ClassVar, Mapping, Optional

import flax.jax_utils
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.training import train_state
from jax import lax

from dseh_jax import input_pipeline, losses, prediction

Array = jax.Array
Batch = Mapping[str, Array]
AXIS_NAME = prediction.AXIS_NAME   # the pmap axis of every step and forward pass

TrainState = train_state.TrainState


class PointBank(struct.PyTreeNode):
  """LabNet's buffers (SPEC §3), kept on the devices (replicated) during a LabNet phase:
  ``semantic`` = all ``f^l_j`` ``[n, 512]``, ``codes`` = all ``h^l_j`` ``[n, K]``; the step
  overwrites the batch's rows before the loss. ``labels``: ``[n, c]`` the training labels
  (for ``S``). Also the bank of the pairwise baselines (``codes`` = their outputs ``u``).
  """
  semantic: Array
  codes: Array
  labels: Array
  SAVED: ClassVar[tuple[str, ...]] = ("semantic", "codes")   # what a checkpoint keeps


LabNetBuffers = PointBank


class LabNetTargets(struct.PyTreeNode):
  """What ImgNet learns from in its phase (SPEC §4), constant: ``semantic`` = LabNet's
  ``F_l`` ``[n, 512]``, ``targets`` = LabNet's codes mapped to {0, 1},
  ``h' = (sign(h^l) + 1) / 2`` ``[n, K]``, ``labels`` ``[n, c]``.

  ``counts``: ``None``, or ``[u]`` multiplicities when ``semantic`` and ``labels`` hold
  only the ``u`` distinct ``(f^l_j, y_j)`` rows (:meth:`grouped`); ``targets`` always has
  one row per training point. J1 is the same either way (``losses.pairwise_likelihood``).
  """
  semantic: Array
  targets: Array
  labels: Array
  counts: Optional[Array] = None
  SAVED: ClassVar[tuple[str, ...]] = ()      # rebuilt from LabNet's parameters

  @classmethod
  def grouped(cls, semantic: Array, targets: Array, labels: Array) -> "LabNetTargets":
    """The targets with J1's side reduced to its distinct rows (:func:`group_rows`).

    LabNet's features are a function of the labels, so the ``n`` rows hold only as many
    distinct ones as there are label sets (NUS-WIDE-21: 1,680 of 10,500): J1's two
    ``[B, n] × [n, 512]`` products shrink by ``n / u``."""
    rows = group_rows(semantic, labels)
    if rows is None:
      return cls(semantic, targets, labels)
    return cls(rows[0], targets, rows[1], rows[2])


def group_rows(semantic: np.ndarray, labels: np.ndarray, *, multiple: int = 128
               ) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """``(semantic [u, d], labels [u, c], counts [u])``: the distinct rows of
  ``[semantic | labels]`` (bit for bit) and how often each occurs, padded with zero rows of
  count 0 to a multiple of ``multiple`` (fewer shapes to compile); ``None`` when that
  saves no rows."""
  semantic, labels = np.asarray(semantic), np.asarray(labels)
  n, d = semantic.shape
  both = np.concatenate([semantic, labels.astype(semantic.dtype)], axis=1)
  distinct, counts = np.unique(both, axis=0, return_counts=True)
  u = -(-len(distinct) // multiple) * multiple
  if u >= n:
    return None
  padded = np.zeros((u, both.shape[1]), both.dtype)
  padded[:len(distinct)] = distinct
  weights = np.zeros(u, semantic.dtype)
  weights[:len(distinct)] = counts
  return padded[:, :d], padded[:, d:].astype(labels.dtype), weights


def _all_gather(x: Array, axis_name: Optional[str]) -> Array:
  """Concatenates every device's ``[b, ...]`` shard into ``[B, ...]`` (device order)."""
  return x if axis_name is None else lax.all_gather(x, axis_name, tiled=True)


def _pmean(tree: Any, axis_name: Optional[str]) -> Any:
  return tree if axis_name is None else lax.pmean(tree, axis_name)


def write_bank_rows(bank: Any, index: Array, semantic: Array, codes: Array,
                    axis_name: Optional[str]) -> Any:
  """Overwrites the rows ``index`` of LabNet's two buffers with the batch's outputs
  (:func:`write_rows`)."""
  return write_rows(bank, index, axis_name, semantic=semantic, codes=codes)


def write_rows(bank: Any, index: Array, axis_name: Optional[str], **values: Array) -> Any:
  """``bank`` with rows ``index`` of each named field overwritten by ``values``.

  The shard's values and indices are gathered from all devices first, so every device
  writes the whole global batch and the replicated banks stay equal. Values are
  stop-gradient: the bank is a constant of the loss (SPEC §3).
  """
  index = _all_gather(index, axis_name)
  return bank.replace(**{
      name: getattr(bank, name).at[index].set(_all_gather(lax.stop_gradient(v), axis_name))
      for name, v in values.items()})


class CodeBank(struct.PyTreeNode):
  """The latest outputs ``codes [n, K]`` of every training point and their ``labels
  [n, c]``: the bank that the pairwise baselines pair each batch with (DPSH style)."""
  codes: Array
  labels: Array
  SAVED: ClassVar[tuple[str, ...]] = ("codes",)


class CodeTargets(struct.PyTreeNode):
  """Fixed per-point targets ``[n, K]`` (CNNH's stage-1 codes) and ``labels [n, c]``."""
  targets: Array
  labels: Array
  SAVED: ClassVar[tuple[str, ...]] = ()       # rebuilt from the labels and the run's key


def example_keys(rng: Array, index: Array) -> Array:
  """``[b, 2]`` per-example keys: ``fold_in(rng, index_i)``; independent of sharding."""
  return jax.vmap(jax.random.fold_in, (None, 0))(rng, index)


def stream_keys(keys: Array, stream: int) -> Array:
  """``[b, 2]`` keys of one random stream (flips, shifts, dropout …) from example keys."""
  return jax.vmap(jax.random.fold_in, (0, None))(keys, stream)


def make_train_step(objective: Callable[..., Any]) -> Callable[..., Any]:
  """A pure, pmap-able ``step(state, bank, batch, rng, *, axis_name, **kwargs)`` from a
  method's objective (module docstring for the arguments).

  ``objective(params, *, state, bank, batch, keys, axis_name, **kwargs)`` returns
  ``(loss, (terms, bank, extra))``: the scalar loss of this device's shard, a dict of loss
  terms, the bank after the step and a dict of further metrics (not differentiated).
  ``keys`` are the per-example keys :func:`example_keys`. The step differentiates the
  loss, averages gradients with ``lax.pmean`` over ``axis_name`` (``None``: one device,
  no collectives), applies the optimiser and returns ``(state, bank, metrics)`` with
  metrics ``loss``, the terms and the extras, averaged over devices.
  """
  def step(state: TrainState, bank: Any, batch: Batch, rng: Array, *,
           axis_name: Optional[str] = AXIS_NAME, **kwargs):
    keys = example_keys(rng, batch["index"])
    loss_fn = functools.partial(objective, state=state, bank=bank, batch=batch, keys=keys,
                                axis_name=axis_name, **kwargs)
    (loss, (terms, bank, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    state = state.apply_gradients(grads=_pmean(grads, axis_name))
    return state, bank, _pmean({"loss": loss, **terms, **extra}, axis_name)

  return step


def labnet_objective(params, *, state: TrainState, bank: PointBank, batch: Batch,
                     keys: Array, axis_name: Optional[str],
                     loss_kwargs: Mapping[str, Any]):
  """LabNet (SPEC §3): write the batch's outputs into the buffers, then
  ``J1 + α·J2 + β·J3 + γ·J4`` of the batch against the updated buffers."""
  del keys                                      # LabNet is deterministic
  labels = batch["labels"]
  out = state.apply_fn({"params": params}, labels)
  new_bank = write_bank_rows(bank, batch["index"], out.semantic, out.codes, axis_name)
  total, terms = losses.labnet_loss(
      out.semantic, out.codes, out.label_pred, labels, new_bank.semantic,
      new_bank.codes, new_bank.labels, **loss_kwargs)
  return total, (terms, new_bank, {})


def augment_images(images: Array, keys: Array, *, flip: bool, max_shift: int) -> Array:
  """Training-time flips (stream 0) and shifts (stream 2) of ``[b, H, W, C]`` images."""
  if flip:
    images = random_flip(images, stream_keys(keys, 0))
  if max_shift:
    images = random_shift(images, stream_keys(keys, 2), max_shift)
  return images


def train_forward(params, state: TrainState, batch: Batch, keys: Array, *, flip: bool,
                  max_shift: int) -> Any:
  """The image network on the batch's inputs in training mode: flips and shifts of image
  inputs (streams 0 and 2 of the per-example ``keys``), dropout from stream 1 (the backbone
  folds layer numbers 0, 1, … into it)."""
  images = augment_images(batch["inputs"], keys, flip=flip, max_shift=max_shift)
  return state.apply_fn({"params": params}, images, dropout_keys=stream_keys(keys, 1))


def imgnet_objective(params, *, state: TrainState, bank: LabNetTargets, batch: Batch,
                     keys: Array, axis_name: Optional[str],
                     loss_kwargs: Mapping[str, Any], flip: bool = False, max_shift: int = 0):
  """ImgNet (SPEC §4): ``J1 + η·J2`` against LabNet's fixed targets; the extra metric
  ``bit_agreement`` is the fraction of bits where ``sign(z^v)`` equals LabNet's code."""
  del axis_name                                 # the bank is constant in this phase
  out = train_forward(params, state, batch, keys, flip=flip, max_shift=max_shift)
  targets = bank.targets[batch["index"]]
  total, terms = losses.imgnet_loss(
      out.semantic, out.hash_logits, batch["labels"], targets, bank.semantic,
      bank.labels, all_counts=bank.counts, **loss_kwargs)
  logits = lax.stop_gradient(out.hash_logits)
  agreement = jnp.mean(((logits >= 0) == (targets > 0.5)).astype(jnp.float32))
  return total, (terms, bank, {"bit_agreement": agreement})


def random_flip(images: Array, keys: Array) -> Array:
  """Flips each ``[b, H, W, C]`` image left-right with probability ½, from its own key."""
  if images.ndim != 4:
    raise ValueError(f"random_flip needs [b, H, W, C] images; got shape {images.shape} "
                     "(feature vectors cannot be flipped)")
  flip = jax.vmap(jax.random.bernoulli)(keys)
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def random_shift(images: Array, keys: Array, max_shift: int) -> Array:
  """Translates each ``[b, H, W, C]`` image by up to ``max_shift`` pixels along each axis.

  The image is padded by ``max_shift`` reflected pixels on every side and an ``H × W``
  window is cut at a uniform offset in ``[0, 2·max_shift]²`` drawn from its own key.
  """
  if images.ndim != 4:
    raise ValueError(f"random_shift needs [b, H, W, C] images; got shape {images.shape} "
                     "(feature vectors cannot be shifted)")
  if max_shift <= 0:
    return images
  _, h, w, c = images.shape
  pad = ((max_shift, max_shift), (max_shift, max_shift), (0, 0))

  def shift_one(image, key):
    dy, dx = jax.random.randint(key, (2,), 0, 2 * max_shift + 1)
    return jax.lax.dynamic_slice(jnp.pad(image, pad, mode="reflect"), (dy, dx, 0), (h, w, c))

  return jax.vmap(shift_one)(images, keys)


def _public_step(objective: Callable[..., Any], name: str, doc: str) -> Callable[..., Any]:
  step = make_train_step(objective)
  step.__name__ = step.__qualname__ = name
  step.__doc__ = doc.strip() + "\n"
  return step


labnet_train_step = _public_step(labnet_objective, "labnet_train_step", """
One LabNet step (SPEC §3): write the batch's outputs into the buffers, then descend
``J1 + α·J2 + β·J3 + γ·J4`` of the batch against the updated buffers.

``labnet_train_step(state, bank, batch, rng, *, loss_kwargs, axis_name="batch")``;
``batch["inputs"]`` is ignored (LabNet reads ``batch["labels"]``) and ``rng`` unused.
``loss_kwargs``: ``weights, s, half, reduction`` of :func:`losses.labnet_loss`.
Returns ``(state, bank, metrics)`` with metrics ``loss, j1…j4``.
""")

imgnet_train_step = _public_step(imgnet_objective, "imgnet_train_step", """
One ImgNet step (SPEC §4): descend ``J1 + η·J2`` against LabNet's fixed targets.

``imgnet_train_step(state, bank, batch, rng, *, loss_kwargs, flip=False, max_shift=0,
axis_name="batch")``. Dropout masks, flips and shifts (``max_shift`` pixels,
:func:`random_shift`) come from per-example keys ``fold_in(rng, index)``, so a step gives
the same result however the global batch is sharded. ``loss_kwargs``: ``weights, s,
half, logit_scale, target_factor, reduction``. Returns ``(state, bank, metrics)``; the
bank is unchanged; metrics ``loss, j1, j2, bit_agreement``.
""")


def pmap_step(step_fn: Callable, *, donate: bool = False, **static_kwargs) -> Callable:
  """``jax.pmap`` of a step over all local devices with ``axis_name="batch"``.

  All arguments carry a leading device axis: use :func:`replicate` for state, bank and
  rng, and :func:`shard_batch` for the batch. When the run has a single device in all
  (one process, one device) the step is :func:`one_device_step` instead: the same
  arguments and results, the same numbers up to float rounding, about twice as fast on
  CPU. ``donate``: the step may reuse the memory of the state and bank it is given (the
  caller must not read them afterwards), so the optimiser and the bank's row writes update
  in place; applied on one device and on accelerators (on CPU it slows ``pmap`` down,
  measured).
  """
  if jax.device_count() == 1:
    return one_device_step(step_fn, donate=donate, **static_kwargs)
  fn = functools.partial(step_fn, axis_name=AXIS_NAME, **static_kwargs)
  donate = donate and jax.default_backend() != "cpu"
  return jax.pmap(fn, axis_name=AXIS_NAME, donate_argnums=(0, 1) if donate else ())


def one_device_step(step_fn: Callable, *, donate: bool = False,
                    **static_kwargs) -> "OneDeviceStep":
  """:func:`pmap_step`'s contract on exactly one device, compiled with ``jax.jit``.

  Inputs and outputs keep the leading device axis of size 1; inside, the step runs with
  ``axis_name=None`` (no collectives: a mean over one device is the identity). On CPU,
  ``pmap`` over one device runs LabNet's NUS-WIDE-sized step in 17–20 ms against 13–15 ms
  for this, and with donated buffers 27–34 ms against 13–15 ms. Loops that run many steps
  should use :attr:`OneDeviceStep.unbatched` between :func:`drop_device_axis` and
  :func:`add_device_axis` (see there).
  """
  return OneDeviceStep(functools.partial(step_fn, axis_name=None, **static_kwargs), donate)


def drop_device_axis(tree: Any) -> Any:
  """``[1, ...]`` leaves → ``[...]`` (one copy each, outside any step)."""
  return jax.tree_util.tree_map(lambda x: x.reshape(x.shape[1:]), tree)


def add_device_axis(tree: Any) -> Any:
  """``[...]`` leaves → ``[1, ...]``."""
  return jax.tree_util.tree_map(lambda x: x[None], tree)


class OneDeviceStep:
  """A step on one device: calling it keeps :func:`pmap_step`'s leading device axis;
  :attr:`unbatched` is the same step, donation included, on arrays without that axis.

  The axis costs time inside a donated step: with it, XLA:CPU copies the parameters and
  Adam moments at every step (measured: 2–3 ms of a 12–15 ms feature or LabNet step),
  where the step without it updates them in place. So a loop of steps drops the axis
  once, runs :attr:`unbatched`, and adds the axis back once (``dseh_jax.epochs``)."""

  def __init__(self, fn: Callable, donate: bool):
    self.unbatched = jax.jit(fn, donate_argnums=(0, 1) if donate else ())

    def step(state, bank, batch, rng):
      return add_device_axis(fn(*drop_device_axis((state, bank, batch, rng))))

    self._batched = jax.jit(step, donate_argnums=(0, 1) if donate else ())

  def __call__(self, state, bank, batch, rng):
    return self._batched(state, bank, batch, rng)


# Reshapes every ``[B, ...]`` array to ``[num_devices, B / num_devices, ...]``.
shard_batch = input_pipeline.split_across_devices


replicate = flax.jax_utils.replicate
unreplicate = flax.jax_utils.unreplicate


# Deterministic forward passes over a whole split live in dseh_jax.prediction.
make_predict_fn = prediction.make_predict_fn
predict_in_batches = prediction.predict_in_batches
