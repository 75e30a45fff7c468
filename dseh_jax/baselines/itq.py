"""ITQ: PCA + iterative quantisation (Gong & Lazebnik, CVPR 2011 / TPAMI 2013; SPEC §8).

Centre the training data, project onto its top ``K`` principal directions ``W [d, K]``
(``V = (X - μ) W``, ``[n, K]``), then find the rotation ``R [K, K]`` minimising the
quantisation error ``Q(B, R) = ‖B - V R‖²_F`` over ``B ∈ {-1, +1}^{n×K}`` by alternating

* ``B = sign(V R)`` (optimal for fixed ``R``), and
* ``R = W_s U_sᵀ`` where ``Bᵀ V = U_s S W_sᵀ`` (orthogonal Procrustes: the rotation
  maximising ``tr(Bᵀ V R)``, optimal for fixed ``B``).

Neither step can increase ``Q``, so the error sequence is non-increasing. The codes are
``sign((x - μ) W R)``: a :class:`LinearHashEncoder` with ``projection = W R``.
Unsupervised: labels are ignored. All linear algebra is float64 numpy.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
import scipy.linalg

from dseh_jax.baselines import encoder as encoder_lib

DEFAULT_ITERATIONS = 50


def pca_directions(x: Any, bits: int, mean: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Top-``bits`` principal directions of ``x [n, d]``.

  Returns ``(mean [d], directions [d, bits], variances [bits])``: orthonormal eigenvectors
  of the float64 covariance with the largest eigenvalues, in decreasing order, each signed
  so that its largest-magnitude entry is positive (deterministic).
  """
  x = encoder_lib.check_features(x, "x_train")
  bits = encoder_lib.check_bits(bits)
  n, d = x.shape
  if bits > d:
    raise ValueError(f"bits={bits}; expected at most the feature dimension d={d}")
  if bits > n:
    raise ValueError(f"bits={bits}; expected at most the number of training rows n={n}")
  if mean is None:
    mean = encoder_lib.feature_mean(x)
  cov = encoder_lib.covariance(x, mean)
  values, vectors = scipy.linalg.eigh(cov, subset_by_index=(d - bits, d - 1))
  order = np.argsort(values)[::-1]
  values, vectors = values[order], vectors[:, order]
  peak = vectors[np.argmax(np.abs(vectors), axis=0), np.arange(bits)]
  vectors = vectors * np.where(peak < 0, -1.0, 1.0)
  return mean, vectors, np.maximum(values, 0.0)


def random_rotation(key: encoder_lib.KeyLike, bits: int) -> np.ndarray:
  """Uniformly random orthogonal ``[bits, bits]`` (float64): QR of a Gaussian drawn from
  ``key`` (jax key or int seed), columns signed by ``diag(R)`` (Haar measure)."""
  g = np.asarray(jax.random.normal(encoder_lib.as_key(key), (bits, bits),
                                   dtype=np.float32), np.float64)
  q, r = np.linalg.qr(g)
  return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def quantization_error(v: np.ndarray, rotation: np.ndarray) -> float:
  """``min_B ‖B - V R‖²_F = ‖sign(V R) - V R‖²_F`` for ``v [n, K]``, ``rotation [K, K]``."""
  z = v @ rotation
  return float(np.sum((np.where(z >= 0, 1.0, -1.0) - z) ** 2))


def itq_rotation(v: Any, key: encoder_lib.KeyLike,
                 iterations: int = DEFAULT_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
  """ITQ rotation of centred, PCA-projected data ``v [n, K]``.

  ``key`` (jax key or int seed) draws the initial random rotation. Returns
  ``(R [K, K], errors [iterations + 1])`` with ``errors[t] = ‖sign(V R_t) - V R_t‖²_F``:
  ``errors[0]`` for the initial rotation, ``errors[t]`` after the ``t``-th B/R update.
  """
  v = np.asarray(v, np.float64)
  if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
    raise ValueError(f"v has shape {v.shape}; expected a non-empty [n, K] matrix")
  if not np.all(np.isfinite(v)):
    raise ValueError("v holds NaN or inf; expected finite values")
  if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
      or iterations < 0:
    raise ValueError(f"iterations={iterations!r}; expected a non-negative int")
  rotation = random_rotation(key, v.shape[1])
  errors = [quantization_error(v, rotation)]
  for _ in range(int(iterations)):
    b = np.where(v @ rotation >= 0, 1.0, -1.0)                  # [n, K]
    u, _, wt = np.linalg.svd(b.T @ v)                             # Bᵀ V = U S Wᵀ
    rotation = wt.T @ u.T                                         # R = W Uᵀ
    errors.append(quantization_error(v, rotation))
  return rotation, np.asarray(errors)


def fit(x_train: Any, y_train: Any, bits: int, key: encoder_lib.KeyLike,
        iterations: int = DEFAULT_ITERATIONS) -> encoder_lib.LinearHashEncoder:
  """ITQ encoder of ``bits`` bits fitted on ``x_train [n, d]`` (needs ``bits ≤ min(n, d)``).

  ``y_train`` is ignored (unsupervised). ``key`` (jax key or int seed) draws the initial
  rotation; ``iterations`` alternations of the B and R steps (50 in the paper).
  """
  del y_train
  x = encoder_lib.check_features(x_train, "x_train")
  mean, directions, _ = pca_directions(x, bits)
  v = np.concatenate([block @ directions for block in _centred(x, mean)], axis=0)
  rotation, _ = itq_rotation(v, key, iterations)
  return encoder_lib.LinearHashEncoder(mean=mean, projection=directions @ rotation,
                                       name="itq")


def _centred(x: np.ndarray, mean: np.ndarray):
  for block in encoder_lib.row_chunks(x, encoder_lib.DEFAULT_CHUNK_SIZE):
    block -= mean
    yield block
