"""Spectral hashing and ITQ-CCA baselines (SPEC §8) against independent computations."""
from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.linalg

from dseh_jax import baselines
from dseh_jax.baselines import itq, itq_cca, sh
from dseh_jax.evaluation import mean_average_precision


def _rotated_box(n=2000, d=4, ratio=0.5, seed=0):
  """Uniform ``[n, d]`` on a randomly rotated box with sides ``4 · ratio^j``, shifted."""
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  return rng.uniform(-0.5, 0.5, size=(n, d)) * 4.0 * ratio ** np.arange(d) @ q.T + 1.0


def _gaussian(n=400, d=6, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, d)) * np.linspace(3.0, 1.0, d) + 2.0


def _four_classes(n_per=150, d=20, seed=0):
  """4 classes separated in 2 dims (unit noise); 18 noise dims of std 6 dominate variance."""
  rng = np.random.default_rng(seed)
  centres = np.zeros((4, d))
  centres[:, :2] = 3.0 * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
  labels = np.repeat(np.arange(4), n_per)
  scales = np.r_[np.ones(2), np.full(d - 2, 6.0)]
  x = centres[labels] + rng.normal(size=(4 * n_per, d)) * scales
  perm = rng.permutation(4 * n_per)
  return x[perm], np.eye(4, dtype=np.float32)[labels[perm]]


def test_sh_bits_balanced_on_uniform_data():
  x = _rotated_box()
  enc = sh.fit(x, None, 10, 0)
  assert enc.modes[:, 1].max() >= 4                     # higher modes are exercised too
  codes = enc.encode(x)
  assert codes.dtype == np.int8 and codes.shape == (2000, 10)
  assert np.all(np.abs(codes.mean(axis=0)) <= 0.1), codes.mean(axis=0)


def test_sh_modes_are_the_smallest_eigenvalues_in_order():
  x = _gaussian()
  bits = 12                                              # > d: several modes per direction
  enc = sh.fit(x, None, bits, 0)
  z = (x - x.mean(axis=0)) @ enc.directions
  ranges = z.max(axis=0) - z.min(axis=0)
  np.testing.assert_allclose(enc.ranges, ranges, rtol=1e-12)
  np.testing.assert_allclose(enc.mins, z.min(axis=0), atol=1e-12)
  k = np.arange(1, bits + 4)
  eps = 0.7
  every = 1.0 - np.exp(-eps ** 2 / 2 * (k[None, :] * np.pi / ranges[:, None]) ** 2)
  chosen = sh.eigenvalues(enc.ranges, enc.modes, eps)
  assert np.all(np.diff(chosen) >= 0)
  np.testing.assert_allclose(chosen, np.sort(every.ravel())[:bits], rtol=1e-12)
  np.testing.assert_allclose(chosen, every[enc.modes[:, 0], enc.modes[:, 1] - 1])
  assert len({tuple(m) for m in enc.modes}) == bits


def test_sh_encoding_matches_direct_formula():
  x = _gaussian(n=300, d=5, seed=1)
  enc = sh.fit(x, np.ones((300, 3)), 9, jax.random.PRNGKey(4))
  centred = x - x.mean(axis=0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  w = vt[:5].T * np.sign(np.sum(vt[:5].T * enc.directions, axis=0))   # same signs as enc
  np.testing.assert_allclose(w, enc.directions, atol=1e-8)
  z = centred @ w
  a, r = z.min(axis=0), z.max(axis=0) - z.min(axis=0)
  queries = _gaussian(n=7, d=5, seed=2) * 1.5            # some fall outside the box
  zq = (queries - x.mean(axis=0)) @ w
  expected = np.empty((7, 9), np.int8)
  for i, (j, k) in enumerate(enc.modes):
    expected[:, i] = np.where(np.sin(np.pi / 2 + k * np.pi * (zq[:, j] - a[j]) / r[j]) >= 0,
                              1, -1)
  np.testing.assert_array_equal(enc.encode(queries), expected)
  np.testing.assert_array_equal(enc.encode(queries, chunk_size=3), expected)
  same = sh.fit(x, None, 9, 123).encode(queries)         # labels and key do not matter
  np.testing.assert_array_equal(same, expected)


def test_sh_one_dimensional_uniform_reproduces_sine_thresholds():
  lo, hi, bits = -2.0, 3.0, 5
  rng = np.random.default_rng(0)
  x = np.r_[lo, hi, rng.uniform(lo, hi, 500)][:, None]
  enc = sh.fit(x, None, bits, 0)
  np.testing.assert_array_equal(enc.modes, np.c_[np.zeros(bits), np.arange(1, bits + 1)])
  np.testing.assert_allclose([enc.mins[0] + enc.mean[0], enc.ranges[0]], [lo, hi - lo])
  t = (np.arange(2000) + 0.37) / 2000                    # never on a threshold
  codes = enc.encode((lo + (hi - lo) * t)[:, None])
  for k in range(1, bits + 1):
    thresholds = (2 * np.arange(k) + 1) / (2 * k)        # zeros of cos(kπt) on [0, 1]
    expected = (-1) ** np.sum(t[:, None] > thresholds[None, :], axis=1)
    np.testing.assert_array_equal(codes[:, k - 1], expected)
    assert np.abs(codes[:, k - 1].mean()) <= 0.01         # half of [a, b] on either side


def test_sh_errors():
  x = _gaussian(n=20, d=3)
  with pytest.raises(ValueError, match="bits=0"):
    sh.fit(x, None, 0, 0)
  with pytest.raises(ValueError, match="x_train"):
    sh.fit(x[0], None, 2, 0)
  enc = sh.fit(x, None, 7, 0)
  assert enc.num_bits == 7 and enc.name == "sh"
  with pytest.raises(ValueError, match="x has shape"):
    enc.encode(np.zeros((2, 4)))
  flat = np.c_[x[:, :2], np.full(20, 5.0)]               # a constant direction: modes last
  assert sh.fit(flat, None, 3, 0).encode(flat).shape == (20, 3)


def _cca_reference(x, y, reg):
  """``A``, ``B`` of the regularised CCA eigenproblem, from ``np.cov``."""
  d = x.shape[1]
  c = np.cov(np.c_[x, y].T, bias=True)
  cxx, cxy, cyy = c[:d, :d], c[:d, d:], c[d:, d:]
  rx, ry = reg * np.trace(cxx) / d, reg * np.trace(cyy) / y.shape[1]
  a = cxy @ np.linalg.inv(cyy + ry * np.eye(y.shape[1])) @ cxy.T
  return a, cxx + rx * np.eye(d)


def test_cca_directions_solve_the_generalised_eigenproblem():
  x, y = _four_classes(n_per=60, d=10)                   # class signal in 2 dims
  bits, reg = 6, 1e-3                                     # bits > c - 1 = 3
  mean, w, values = itq_cca.cca_directions(x, y, bits, reg)
  a, b = _cca_reference(x, y.astype(np.float64), reg)
  np.testing.assert_allclose(mean, x.mean(axis=0), atol=1e-12)
  residual = a @ w - b @ w * values
  assert np.abs(residual).max() <= 1e-9 * np.abs(a).max()
  np.testing.assert_allclose(w.T @ b @ w, np.eye(bits), atol=1e-9)
  reference = np.sort(np.real(scipy.linalg.eigvals(np.linalg.solve(b, a))))[::-1]
  np.testing.assert_allclose(values[:3], reference[:3], rtol=1e-8)
  assert np.all(np.diff(values) <= 0) and np.all(values[:2] > 0.5) and values[0] < 1
  assert np.all(values[3:] <= 1e-10)                      # centred one-hot labels: rank c - 1


def test_itq_cca_rotation_error_non_increasing_and_used_by_fit():
  x, y = _four_classes(n_per=50, d=12, seed=1)
  mean, w, values = itq_cca.cca_directions(x, y, 3, itq_cca.DEFAULT_REG)
  v = (x - mean) @ (w * values)
  rotation, errors = itq.itq_rotation(v, jax.random.PRNGKey(5), iterations=20)
  assert np.all(np.diff(errors) <= 1e-9 * errors[0]) and errors[-1] < errors[0]
  enc = itq_cca.fit(x, y, 3, jax.random.PRNGKey(5), iterations=20)
  assert enc.name == "itq_cca" and enc.num_bits == 3
  np.testing.assert_allclose(enc.projection, (w * values) @ rotation, atol=1e-10)


@pytest.mark.parametrize("bits", [2, 8])
def test_itq_cca_beats_unsupervised_baselines_on_separable_classes(bits):
  x, y = _four_classes()
  train, test = slice(0, 500), slice(500, None)
  scores = {}
  for name, fitter in (("lsh", lambda *a: baselines.fit("lsh", *a)),
                       ("itq", lambda *a: baselines.fit("itq", *a)), ("itq_cca", itq_cca.fit)):
    enc = fitter(x[train], y[train], bits, jax.random.PRNGKey(0))
    scores[name] = mean_average_precision(enc.encode(x[test]), enc.encode(x[train]),
                                          y[test], y[train])
  assert scores["itq_cca"] > 0.9, scores                  # chance is about 0.25
  assert scores["itq_cca"] > max(scores["lsh"], scores["itq"]) + 0.3, scores


def test_itq_cca_errors():
  x, y = _four_classes(n_per=10, d=5)
  with pytest.raises(ValueError, match="y_train is None"):
    itq_cca.fit(x, None, 2, 0)
  with pytest.raises(ValueError, match="y_train has shape"):
    itq_cca.fit(x, y[:-1], 2, 0)
  with pytest.raises(ValueError, match="bits=6"):
    itq_cca.fit(x, y, 6, 0)
  with pytest.raises(ValueError, match="reg="):
    itq_cca.fit(x, y, 2, 0, reg=0.0)
