"""Unsupervised shallow baselines (SPEC §8): LSH and ITQ on small synthetic data."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from dseh_jax import baselines
from dseh_jax.baselines import encoder as encoder_lib
from dseh_jax.baselines import itq, lsh
from dseh_jax.evaluation import mean_average_precision


def _anisotropic(n=600, d=12, seed=0):
  """Gaussian ``[n, d]`` with distinct variances (a clear spectral gap) and a non-zero mean."""
  rng = np.random.default_rng(seed)
  scales = np.linspace(4.0, 0.5, d)
  basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
  return rng.normal(size=(n, d)) * scales @ basis.T + 3.0


def _two_clusters(n_per=150, d=16, seed=0):
  """Two far-apart Gaussian clusters; labels one-hot by cluster."""
  rng = np.random.default_rng(seed)
  centre = rng.normal(size=d)
  centre *= 8.0 / np.linalg.norm(centre)
  x = np.concatenate([rng.normal(size=(n_per, d)) + centre,
                      rng.normal(size=(n_per, d)) - centre])
  y = np.repeat(np.eye(2, dtype=np.float32), n_per, axis=0)
  perm = rng.permutation(2 * n_per)
  return x[perm], y[perm]


def test_itq_error_non_increasing_and_below_initial():
  x = _anisotropic()
  mean, w, _ = itq.pca_directions(x, 8)
  v = (x - mean) @ w
  rotation, errors = itq.itq_rotation(v, jax.random.PRNGKey(3), iterations=30)
  assert errors.shape == (31,)
  steps = np.diff(errors)
  assert np.all(steps <= 1e-9 * errors[0]), steps.max()
  assert errors[-1] < errors[0]
  np.testing.assert_allclose(errors[-1], itq.quantization_error(v, rotation))


def test_itq_rotation_orthogonal():
  v = _anisotropic(d=10)[:, :6] - 3.0
  rotation, _ = itq.itq_rotation(v, 7, iterations=10)
  np.testing.assert_allclose(rotation.T @ rotation, np.eye(6), atol=1e-10)
  r0 = itq.random_rotation(7, 6)
  np.testing.assert_allclose(r0.T @ r0, np.eye(6), atol=1e-10)


def test_pca_subspace_matches_svd():
  x = _anisotropic()
  bits = 5
  enc = itq.fit(x, None, bits, 0)
  _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
  reference = vt[:bits].T @ vt[:bits]                   # projector onto the top subspace
  np.testing.assert_allclose(enc.projection @ enc.projection.T, reference, atol=1e-8)
  np.testing.assert_allclose(enc.mean, x.mean(axis=0), atol=1e-12)
  _, w, variances = itq.pca_directions(x, bits)
  assert np.all(np.diff(variances) <= 0)
  np.testing.assert_allclose(np.abs(w.T @ vt[:bits].T), np.eye(bits), atol=1e-8)


def test_lsh_bits_balanced_and_deterministic():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(4000, 20)) + 5.0                 # far from the origin: centring matters
  enc = lsh.fit(x, None, 32, jax.random.PRNGKey(0))
  codes = enc.encode(x)
  assert np.all(np.abs(codes.mean(axis=0)) <= 0.1)
  again = lsh.fit(x, np.zeros(4000), 32, 0).encode(x)  # int seed 0 is PRNGKey(0)
  np.testing.assert_array_equal(codes, again)
  other = lsh.fit(x, None, 32, jax.random.PRNGKey(1)).encode(x)
  assert np.mean(codes != other) > 0.2


def test_typed_key_accepted():
  x = _anisotropic(n=50, d=6)
  a = lsh.fit(x, None, 4, jax.random.key(2)).encode(x)
  b = itq.fit(x, None, 4, jax.random.key(2)).encode(x)
  assert a.shape == b.shape == (50, 4)
  with pytest.raises(TypeError, match="key"):
    lsh.fit(x, None, 4, "seed")


def test_encode_int8_pm1_and_sign_zero_is_plus_one():
  enc = encoder_lib.LinearHashEncoder(mean=np.zeros(3), projection=np.eye(3), name="id")
  codes = enc.encode(np.array([[0.0, -1.0, 2.0], [-0.5, 0.0, 0.0]]))
  assert codes.dtype == np.int8 and codes.shape == (2, 3)
  np.testing.assert_array_equal(codes, [[1, -1, 1], [-1, 1, 1]])
  shifted = encoder_lib.LinearHashEncoder(np.ones(3), np.eye(3), offset=np.full(3, 1.0))
  np.testing.assert_array_equal(shifted.encode(np.full((1, 3), 2.0)), [[1, 1, 1]])
  np.testing.assert_array_equal(shifted.encode(np.full((1, 3), 1.5)), [[-1, -1, -1]])


def test_chunked_encoding_matches_unchunked_and_leaves_input_alone():
  x = _anisotropic(n=103)
  enc = itq.fit(x, None, 6, 0)
  before = x.copy()
  full = enc.encode(x, chunk_size=10**6)
  np.testing.assert_array_equal(enc.encode(x, chunk_size=7), full)
  np.testing.assert_array_equal(enc.encode(x.astype(np.float32), chunk_size=16,
                                           dtype=np.float32), full)
  np.testing.assert_array_equal(x, before)
  assert set(np.unique(full)) <= {-1, 1}


def test_errors():
  x = _anisotropic(n=20, d=6)
  with pytest.raises(ValueError, match="bits=7"):
    itq.fit(x, None, 7, 0)
  with pytest.raises(ValueError, match="bits=8"):
    itq.fit(x[:5], None, 8, 0)
  with pytest.raises(ValueError, match="bits=0"):
    lsh.fit(x, None, 0, 0)
  with pytest.raises(ValueError, match="x_train"):
    lsh.fit(x[0], None, 2, 0)
  with pytest.raises(ValueError, match="name="):
    baselines.fit("spectral", x, None, 4, 0)
  enc = lsh.fit(x, None, 10, 0)                          # LSH may use more bits than d
  assert enc.encode(x).shape == (20, 10)
  with pytest.raises(ValueError, match=r"x has shape"):
    enc.encode(np.zeros((3, 5)))
  with pytest.raises(ValueError, match="mean"):
    encoder_lib.LinearHashEncoder(np.zeros(2), np.eye(3))


@pytest.mark.parametrize("name", sorted(baselines.FITTERS))
def test_separable_clusters_map_well_above_chance(name):
  x, y = _two_clusters()
  enc = baselines.fit(name, x[:200], y[:200], 8, jax.random.PRNGKey(0))
  assert enc.name == name and enc.num_bits == 8
  q, db = enc.encode(x[200:]), enc.encode(x[:200])
  score = mean_average_precision(q, db, y[200:], y[:200])
  # SH's higher modes split the clusters along their long axis (8 bits: about .82).
  assert score > (0.75 if name == "sh" else 0.85), score   # chance is about 0.5
