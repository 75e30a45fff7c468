"""Deterministic forward passes of a network over a whole split, on all local devices.

:func:`make_predict_fn` pmaps ``apply_fn``; :func:`predict_in_batches` feeds it padded,
prefetched batches (:func:`dseh_jax.input_pipeline.prefetch_eval_batches`) and returns
numpy outputs row for row. Used for encoding (``dseh_jax.evaluation.encoding``), the
trainer's phase-end passes and feature extraction.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
import tqdm

from dseh_jax import input_pipeline

AXIS_NAME = "batch"


def make_predict_fn(apply_fn: Callable, *, flip_average: bool = False) -> Callable:
  """pmap-ed deterministic forward pass ``(params, inputs [D, b, ...]) -> outputs``.

  ``flip_average``: every output is the mean of the outputs for the image and its mirror
  image (``[.., H, W, C]`` inputs flipped left-right), test-time flip averaging.
  """
  def forward(params, x):
    out = apply_fn({"params": params}, x)
    if not flip_average:
      return out
    mirrored = apply_fn({"params": params}, x[..., ::-1, :])
    return jax.tree_util.tree_map(lambda a, b: (a + b) / 2, out, mirrored)
  return jax.pmap(forward, axis_name=AXIS_NAME)


class RowBlock:
  """Rows ``start … start + length - 1`` of ``inputs`` as a lazy ``[length, ...]`` array;
  rows past the end of ``inputs`` read as row 0 (padding, dropped by the caller)."""

  def __init__(self, inputs: Any, start: int, length: int):
    self.inputs, self.start, self.length = inputs, int(start), int(length)

  @property
  def shape(self) -> tuple[int, ...]:
    return (self.length,) + tuple(self.inputs.shape[1:])

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, key: slice) -> np.ndarray:
    a, b, step = key.indices(self.length)
    if step != 1:
      raise IndexError("RowBlock takes contiguous slices only")
    n = len(self.inputs)
    x = np.asarray(self.inputs[min(self.start + a, n):min(self.start + b, n)])
    missing = (b - a) - x.shape[0]
    if missing > 0:
      x = np.concatenate([x, np.repeat(np.asarray(self.inputs[0:1]), missing, axis=0)])
    return x


def predict_in_batches(predict_fn: Callable, params: Any, inputs: np.ndarray,
                       batch_size: int, num_devices: int, *, progress: str = ""
                       ) -> tuple[np.ndarray, ...]:
  """Runs ``predict_fn`` over every row of ``inputs`` ``[n, ...]``; returns numpy ``[n, ...]``.

  With several processes (:mod:`dseh_jax.distributed`) each predicts one block of
  ``ceil(n / processes)`` rows on its local devices and the blocks are all-gathered, so
  every process returns all ``n`` rows.
  """
  count = jax.process_count()
  if count == 1:
    return _predict_local(predict_fn, params, inputs, batch_size, num_devices, progress)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  share = -(-len(inputs) // count)
  block = RowBlock(inputs, jax.process_index() * share, share)
  mine = _predict_local(predict_fn, params, block, batch_size, num_devices, progress)
  gathered = multihost_utils.process_allgather(mine)              # [processes, share, ...]
  return jax.tree_util.tree_map(
      lambda a: np.asarray(a).reshape((count * share,) + a.shape[2:])[:len(inputs)],
      gathered)


def _predict_local(predict_fn: Callable, params: Any, inputs: Any, batch_size: int,
                   num_devices: int, progress: str = "") -> tuple[np.ndarray, ...]:
  """Every row of ``inputs`` on this process's devices.

  ``params`` are replicated; ``inputs`` is an array or a lazy
  :class:`dseh_jax.input_pipeline.ImageArray`. Batches are decoded in a background thread
  and put on the devices ahead of use; each batch's outputs are copied to the host after
  the next batch is dispatched. The last batch is padded with copies of row 0 and the
  padded rows are dropped from the outputs, so no row is lost or counted twice.
  ``progress``: when given, a tqdm bar with this description.
  """
  batch_size = max(num_devices, batch_size - batch_size % num_devices)

  def to_host(out, num_real: int):
    return jax.tree_util.tree_map(
        lambda a: np.asarray(a).reshape((batch_size,) + a.shape[2:])[:num_real], out)

  chunks, pending = [], None
  batches = input_pipeline.prefetch_eval_batches(inputs, batch_size, num_devices,
                                                 axis_name=AXIS_NAME)
  for batch in tqdm.tqdm(batches, total=-(-len(inputs) // batch_size), desc=progress,
                         disable=not progress, unit="batch", leave=False):
    out = predict_fn(params, batch.inputs)
    if pending is not None:
      chunks.append(to_host(*pending))
    pending = (out, batch.num_real)
  if pending is not None:
    chunks.append(to_host(*pending))
  return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *chunks)
