"""Encoding a split: a trained network's ``sign`` codes, packed on the devices (SPEC §4).

The test-time code of ImgNet is ``sign(z^v)`` with ``sign(0) = +1`` (SPEC §4,
:func:`dseh_jax.evaluation.codes.binarize`). :func:`encode_split` runs the network over a
split in batches on all local devices (``jax.pmap``) and packs the signs into ``uint32``
words before they leave the devices, so the host receives ``4 ⌈K/32⌉`` bytes per item
instead of ``4 K``.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.jax_utils
import jax
import jax.numpy as jnp
import numpy as np

from dseh_jax import prediction
from dseh_jax.evaluation import codes as codes_lib


def pack_signs(logits: jax.Array) -> jax.Array:
  """``[b, K]`` real values → ``[b, ceil(K/32)]`` uint32 words of ``sign`` bits (bit ``k`` is
  1 where ``logits[:, k] >= 0``), in the layout of :func:`codes.pack_codes`."""
  b, k = logits.shape
  w = codes_lib.num_words(k)
  bits = (logits >= 0).astype(jnp.uint32)
  bits = jnp.pad(bits, ((0, 0), (0, w * codes_lib.WORD_BITS - k))).reshape(b, w, -1)
  shifts = jnp.arange(codes_lib.WORD_BITS, dtype=jnp.uint32)
  return jnp.sum(bits << shifts, axis=-1, dtype=jnp.uint32)     # distinct bits: sum = OR


def _select(out: Any, output: str) -> jax.Array:
  if output and hasattr(out, output):
    return getattr(out, output)
  if isinstance(out, jax.Array):
    return out
  raise ValueError(f"the network's outputs {type(out).__name__} have no field {output!r}; "
                   "pass output= the name of the real-valued code field (ImgNet: "
                   "'hash_logits', LabNet: 'codes')")


def make_encode_fn(apply_fn: Callable, output: str = "hash_logits") -> Callable:
  """pmap-ed ``(params, inputs [D, b, ...]) -> (packed [D, b, W], non_finite [D, b])``."""
  def encode(params, x):
    values = _select(apply_fn({"params": params}, x), output)
    return pack_signs(values), jnp.any(~jnp.isfinite(values), axis=-1)
  return jax.pmap(encode, axis_name=prediction.AXIS_NAME)


def code_length(apply_fn: Callable, params: Any, inputs: Any,
                output: str = "hash_logits") -> int:
  """``K``: the width of the network's code output, from shapes alone (nothing runs)."""
  probe = jax.ShapeDtypeStruct((1,) + tuple(inputs.shape[1:]), jnp.float32)
  shape = jax.eval_shape(lambda p, x: _select(apply_fn({"params": p}, x), output),
                         params, probe).shape
  if len(shape) != 2:
    raise ValueError(f"the network's {output!r} output has shape {shape} for one item; "
                     "expected [1, num_bits]")
  return int(shape[1])


def encode_split(apply_fn: Callable, params: Any, inputs: Any, *, batch_size: int = 256,
                 output: str = "hash_logits") -> tuple[np.ndarray, int]:
  """Packed ``sign`` codes of every row of ``inputs``.

  Args:
    apply_fn: the network's ``apply`` (e.g. ``ImgNet(...).apply``), called as
      ``apply_fn({"params": params}, x)`` in its deterministic (test-time) mode.
    params: the network's parameters, not replicated.
    inputs: ``[n, ...]`` float32 images or features, or a lazy ``ImageArray``.
    batch_size: global batch (rounded down to a multiple of the device count).
    output: the field of the outputs holding the real-valued codes.

  Returns:
    ``(packed [n, ceil(K/32)] uint32, K)``; ``unpack_codes(packed, K)`` equals
    ``binarize(outputs.<output>)``.

  Raises:
    ValueError: when an output is NaN or infinite (a diverged model has no codes).
  """
  num_bits = code_length(apply_fn, params, inputs, output)
  n = int(inputs.shape[0])
  if n == 0:
    return np.zeros((0, codes_lib.num_words(num_bits)), np.uint32), num_bits
  num_devices = jax.local_device_count()
  packed, bad = prediction.predict_in_batches(make_encode_fn(apply_fn, output),
                                      flax.jax_utils.replicate(params), inputs,
                                      batch_size, num_devices)
  if np.any(bad):
    rows = np.flatnonzero(bad)
    raise ValueError(f"the network's {output!r} output is NaN or infinite for {rows.size} "
                     f"of {n} rows (first: {rows[:5].tolist()}); the model has diverged")
  return np.ascontiguousarray(packed, dtype=np.uint32), num_bits
