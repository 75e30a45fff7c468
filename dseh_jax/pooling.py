"""Max pooling with a fast backward pass on CPU.

XLA lowers the gradient of ``reduce_window(max)`` to select-and-scatter, which is slow on
CPU (about 150 ms for CNN-F's conv1 output at batch 32 on one core). :func:`max_pool` has
the same values and the same gradient (each window's first maximum, in row-major window
order, takes the window's gradient, as select-and-scatter does) computed as one masked,
strided ``lax.pad`` per window offset: 3–4× faster there (``experiments/bench_train.py``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def max_pool(x: Array, window: int, stride: int,
             padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))) -> Array:
  """``flax.linen.max_pool(x, (window,) * 2, (stride,) * 2, padding)`` of NHWC ``x``
  (padding with ``-inf``), with the backward pass of this module."""
  if any(p for pair in padding for p in pair):
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
  return _max_pool_valid(x, int(window), int(stride))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool_valid(x: Array, window: int, stride: int) -> Array:
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1),
                           (1, stride, stride, 1), "VALID")


def _forward(x, window, stride):
  y = _max_pool_valid(x, window, stride)
  return y, (x, y)


def _backward(window, stride, residuals, grad_y):
  """Each window offset ``(di, dj)``: the outputs whose first maximum sits there send
  their gradient to that input (a strided pad places them)."""
  x, y = residuals
  height, width = x.shape[1], x.shape[2]
  out_h, out_w = y.shape[1], y.shape[2]
  span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
  grad_x = jnp.zeros_like(x)
  taken = jnp.zeros(y.shape, bool)
  for di in range(window):
    for dj in range(window):
      at = x[:, di:di + span_h:stride, dj:dj + span_w:stride, :] == y
      first = at & ~taken
      taken = taken | first
      grad_x = grad_x + lax.pad(
          jnp.where(first, grad_y, 0.0).astype(x.dtype), jnp.zeros((), x.dtype),
          ((0, 0, 0), (di, height - di - span_h, stride - 1),
           (dj, width - dj - span_w, stride - 1), (0, 0, 0)))
  return (grad_x,)


_max_pool_valid.defvjp(_forward, _backward)
