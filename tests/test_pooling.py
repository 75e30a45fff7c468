"""``dseh_jax.pooling.max_pool``: flax's values and XLA's select-and-scatter gradient (the
first maximum of a window, row-major), against a float64 numpy brute force."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import models, pooling


def _brute(x, w, s, pad, g):
  """Pooled values and the gradient of ``sum(pool(x) * g)`` by looping over windows."""
  xp = np.pad(x.astype(np.float64), ((0, 0), *pad, (0, 0)), constant_values=-np.inf)
  n, h, wd, c = xp.shape
  oh, ow = (h - w) // s + 1, (wd - w) // s + 1
  y, dx = np.zeros((n, oh, ow, c)), np.zeros_like(xp)
  for b in range(n):
    for i in range(oh):
      for j in range(ow):
        for k in range(c):
          win = xp[b, i * s:i * s + w, j * s:j * s + w, k]
          first = np.argmax(win.reshape(-1))            # the first maximum, row-major
          y[b, i, j, k] = win.reshape(-1)[first]
          dx[b, i * s + first // w, j * s + first % w, k] += g[b, i, j, k]
  return y, dx[:, pad[0][0]:h - pad[0][1], pad[1][0]:wd - pad[1][1], :]


@pytest.mark.parametrize("window,stride,pad", [(3, 2, ((0, 0), (0, 0))),
                                               (3, 2, ((0, 1), (0, 1))),
                                               (2, 2, ((0, 0), (0, 0))), (3, 1, ((1, 1), (1, 1)))])
def test_max_pool_values_and_gradient_match_brute_force(window, stride, pad):
  rng = np.random.default_rng(window * 10 + stride)
  # ReLU-like inputs with many exact ties (zeros and repeated values).
  x = np.maximum(rng.integers(-3, 4, size=(2, 9, 8, 3)), 0).astype(np.float32)
  y = pooling.max_pool(jnp.asarray(x), window, stride, pad)
  g = rng.standard_normal(y.shape).astype(np.float32)
  want_y, want_dx = _brute(x, window, stride, pad, g)
  np.testing.assert_array_equal(np.asarray(y), want_y)
  dx = jax.grad(lambda v: jnp.sum(pooling.max_pool(v, window, stride, pad) * g))(x)
  np.testing.assert_allclose(np.asarray(dx), want_dx, rtol=1e-6, atol=1e-6)
  flax_y = nn.max_pool(jnp.asarray(x), (window,) * 2, (stride,) * 2, padding=pad)
  flax_dx = jax.grad(lambda v: jnp.sum(
      nn.max_pool(v, (window,) * 2, (stride,) * 2, padding=pad) * g))(x)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(flax_y))
  np.testing.assert_allclose(np.asarray(dx), np.asarray(flax_dx), rtol=1e-6, atol=1e-6)


def test_lrn_matches_float64_formula():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 3, 3, 7)).astype(np.float32) * 30
  p = models.LRNParams()
  x64 = x.astype(np.float64)
  sq = np.pad(x64 ** 2, ((0, 0),) * 3 + ((2, 2),))
  s = sum(sq[..., d:d + 7] for d in range(5))
  want = x64 / (p.bias + p.alpha * s) ** p.beta
  np.testing.assert_allclose(np.asarray(models.local_response_norm(jnp.asarray(x), p)), want,
                             rtol=2e-6, atol=1e-6)
