"""Supervised kernel baselines (SPEC §8): anchor RBF features, KSH and SDH on small data."""
from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.linalg

from dseh_jax import baselines
from dseh_jax.baselines import kernel, ksh, sdh
from dseh_jax.evaluation import mean_average_precision


def _four_classes(n_per=100, seed=0):
  """4 Gaussian classes in 20-d: class means at (±2.5, ±2.5) in 2 dims, 18 noise dims of
  std 3 holding most of the variance. Labels one-hot."""
  rng = np.random.default_rng(seed)
  centres = np.array([[2.5, 2.5], [2.5, -2.5], [-2.5, 2.5], [-2.5, -2.5]])
  c = np.repeat(np.arange(4), n_per)
  x = np.concatenate([centres[c] + rng.normal(size=(4 * n_per, 2)),
                      3.0 * rng.normal(size=(4 * n_per, 18))], axis=1)
  perm = rng.permutation(4 * n_per)
  return x[perm], np.eye(4)[c[perm]]


def _direct_phi(x, anchors, sigma):
  return np.exp(-np.sum((x[:, None, :] - anchors[None]) ** 2, axis=-1) / (2 * sigma ** 2))


def _sign(z):
  return np.where(z >= 0, 1.0, -1.0)


def test_rbf_features_match_direct_formula():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 5)) * 3.0 + 1.0
  anchors, sigma, phi = kernel.anchor_features(x, jax.random.PRNGKey(1), num_anchors=7)
  rows = [np.flatnonzero(np.all(x == a, axis=1)) for a in anchors]
  assert anchors.shape == (7, 5) and all(len(r) == 1 for r in rows)
  assert len({int(r[0]) for r in rows}) == 7                       # distinct training rows
  dist = np.sqrt(np.sum((x[:, None, :] - anchors[None]) ** 2, axis=-1))
  np.testing.assert_allclose(sigma, dist.mean(), rtol=1e-8)   # ‖x‖²-2x·a+‖a‖² cancels
  np.testing.assert_allclose(phi, _direct_phi(x, anchors, sigma), rtol=1e-10, atol=1e-14)
  new = rng.normal(size=(9, 5))
  np.testing.assert_allclose(kernel.rbf_features(new, anchors, 0.7, chunk_size=4),
                             _direct_phi(new, anchors, 0.7), rtol=1e-10, atol=1e-14)
  _, fixed, _ = kernel.anchor_features(x, 1, num_anchors=100, sigma=2.0)
  assert fixed == 2.0
  assert kernel.sample_anchors(x, 100, 1).shape == (40, 5)        # at most n anchors


def test_kernel_encoder_matches_direct_codes_in_chunks():
  rng = np.random.default_rng(2)
  anchors, x = rng.normal(size=(6, 4)), rng.normal(size=(23, 4))
  proj, mean, offset = rng.normal(size=(6, 5)), rng.random(6), rng.normal(size=5) * 0.1
  enc = kernel.KernelHashEncoder(anchors, 1.5, proj, feature_mean=mean, offset=offset)
  want = _sign((_direct_phi(x, anchors, 1.5) - mean) @ proj - offset)
  codes = enc.encode(x, chunk_size=4)
  assert codes.dtype == np.int8 and codes.shape == (23, 5)
  np.testing.assert_array_equal(codes, want)
  np.testing.assert_array_equal(enc.encode(x), codes)
  with pytest.raises(ValueError, match="x has shape"):
    enc.encode(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="sigma"):
    kernel.KernelHashEncoder(anchors, 0.0, proj)
  with pytest.raises(ValueError, match="projection"):
    kernel.KernelHashEncoder(anchors, 1.0, proj[:5])


def _ksh_problem():
  x, y = _four_classes(n_per=50)
  _, _, phi = kernel.anchor_features(x, 0, num_anchors=60)
  return phi - phi.mean(axis=0), ksh.similarity(y)


def test_ksh_fitting_error_decreases_bit_by_bit():
  kbar, s = _ksh_problem()
  bits = 8
  a, costs = ksh.ksh_projections(kbar, s, bits, iterations=30)
  h = _sign(kbar @ a)
  direct = [np.sum((bits * s - h[:, :k] @ h[:, :k].T) ** 2) for k in range(bits + 1)]
  np.testing.assert_allclose(costs, direct, rtol=1e-12)
  assert np.all(np.diff(costs) < 0), costs
  assert costs[-1] < 0.5 * costs[0]


def test_ksh_first_bit_at_least_as_good_as_spectral_relaxation():
  kbar, s = _ksh_problem()
  a, _ = ksh.ksh_projections(kbar, s, 1, iterations=30)
  # Independent spectral solution: whiten with the Cholesky factor of K̄ᵀK̄ + εI.
  gram = kbar.T @ kbar + 1e-4 * np.trace(kbar.T @ kbar) / kbar.shape[1] * np.eye(kbar.shape[1])
  chol = np.linalg.cholesky(gram)
  c_inv = scipy.linalg.solve_triangular(chol, np.eye(len(chol)), lower=True)
  m = c_inv @ kbar.T @ s @ kbar @ c_inv.T
  _, vecs = np.linalg.eigh((m + m.T) / 2)
  b_spec = _sign(kbar @ (c_inv.T @ vecs[:, -1]))
  b = _sign(kbar @ a[:, 0])
  assert b @ s @ b >= b_spec @ s @ b_spec - 1e-9


def _sdh_problem(seed=3, n=60, m=10, c=3, r=6):
  rng = np.random.default_rng(seed)
  phi = rng.random((n, m))
  y = np.eye(c)[rng.integers(0, c, n)]
  b = _sign(rng.normal(size=(n, r)))
  return phi, y, b


def test_sdh_dcc_bit_never_increases_objective_and_is_columnwise_optimal():
  phi, y, b = _sdh_problem()
  nu = 0.5                                  # large ν so the ΦP term matters in this check
  p, w = sdh.f_step(phi, b), sdh.g_step(b, y)
  q = y @ w.T + nu * phi @ p
  for sweep in range(2):
    for k in range(b.shape[1]):
      before = sdh.sdh_objective(b, w, p, phi, y, nu=nu)
      sdh.dcc_bit(b, w, q, k)
      after = sdh.sdh_objective(b, w, p, phi, y, nu=nu)
      assert after <= before + 1e-9, (sweep, k, before, after)
      for i in range(0, len(b), 7):         # no single flip in the column does better
        flipped = b.copy()
        flipped[i, k] *= -1
        assert sdh.sdh_objective(flipped, w, p, phi, y, nu=nu) >= after - 1e-9


def test_sdh_f_and_g_steps_are_stationary_points():
  phi, y, b = _sdh_problem()
  p, w = sdh.f_step(phi, b, delta=0.3), sdh.g_step(b, y, lam=2.0)
  np.testing.assert_allclose(phi.T @ (phi @ p - b) + 0.3 * p, 0.0, atol=1e-9)
  np.testing.assert_allclose(b.T @ (b @ w - y) + 2.0 * w, 0.0, atol=1e-9)


def test_sdh_objective_non_increasing_over_iterations():
  x, y = _four_classes(n_per=40)
  _, _, phi = kernel.anchor_features(x, 0, num_anchors=50)
  b0 = _sign(np.random.default_rng(0).normal(size=(len(x), 8)))
  for nu in (1e-5, 1.0):
    b, w, p, history = sdh.sdh_optimize(phi, y, b0, nu=nu, iterations=5, sweeps=3)
    assert history.shape == (16,)
    assert np.all(np.diff(history) <= 1e-9 * history[0]), history
    assert history[-1] < history[0]
    np.testing.assert_allclose(history[-1], sdh.sdh_objective(b, w, p, phi, y, nu=nu))
  np.testing.assert_array_equal(b0, _sign(np.random.default_rng(0).normal(size=b0.shape)))


def test_supervised_kernel_hashing_beats_lsh_on_separable_toy():
  x, y = _four_classes(n_per=125)
  xt, yt, xq, yq = x[:400], y[:400], x[400:], y[400:]
  scores = {}
  for name, enc in [("lsh", baselines.fit("lsh", xt, yt, 16, 0)),
                    ("ksh", ksh.fit(xt, yt, 16, 0, num_anchors=100, iterations=30)),
                    ("sdh", sdh.fit(xt, yt, 16, 0, num_anchors=100))]:
    assert enc.name == name and enc.num_bits == 16
    scores[name] = mean_average_precision(enc.encode(xq), enc.encode(xt), yq, yt)
  assert scores["lsh"] < 0.5, scores                  # noise dims swamp random projections
  assert scores["ksh"] > 0.8 and scores["sdh"] > 0.8, scores


@pytest.mark.parametrize("method", [ksh, sdh])
def test_deterministic_given_key(method):
  x, y = _four_classes(n_per=20, seed=1)
  kw = dict(num_anchors=30, iterations=5)
  codes = method.fit(x, y, 6, jax.random.PRNGKey(4), **kw).encode(x)
  np.testing.assert_array_equal(method.fit(x, y, 6, 4, **kw).encode(x), codes)
  np.testing.assert_array_equal(method.fit(x, y, 6, jax.random.key(4), **kw).encode(x), codes)
  other = method.fit(x, y, 6, 5, **kw).encode(x)
  assert not np.array_equal(codes, other)


def test_errors():
  x, y = _four_classes(n_per=5)
  with pytest.raises(ValueError, match="y_train"):
    ksh.fit(x, y[:-1], 4, 0)
  with pytest.raises(ValueError, match="y_train"):
    sdh.fit(x, np.argmax(y, axis=1), 4, 0)
  with pytest.raises(ValueError, match="bits=0"):
    sdh.fit(x, y, 0, 0)
  with pytest.raises(ValueError, match="num_anchors"):
    ksh.fit(x, y, 4, 0, num_anchors=0)
  with pytest.raises(ValueError, match="sigma"):
    sdh.fit(x, y, 4, 0, sigma=-1.0)
  with pytest.raises(TypeError, match="key"):
    ksh.fit(x, y, 4, "seed")
