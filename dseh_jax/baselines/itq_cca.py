"""ITQ-CCA: supervised ITQ on a CCA embedding (Gong, Lazebnik, Gordo & Perronnin, TPAMI 2013; §8).

With centred features ``X [n, d]`` and labels ``Y [n, c]`` (multi-hot), covariances
``C_xx, C_xy, C_yy`` (divided by ``n``) and ridges ``r_x = reg · tr(C_xx) / d``,
``r_y = reg · tr(C_yy) / c``, the CCA directions for ``X`` solve the generalised symmetric
eigenproblem

  ``C_xy (C_yy + r_y I)⁻¹ C_yx w = λ (C_xx + r_x I) w``,   ``wᵀ (C_xx + r_x I) w = 1``,

``λ = ρ²`` the (regularised) squared canonical correlation. We keep the top ``K``
eigenvectors ``W [d, K]`` and, as the paper does, scale each by its eigenvalue:
``P = W diag(λ)``. Then ITQ (:func:`itq.itq_rotation`, reused) rotates ``V = (X - μ) P`` to
minimise ``‖B - V R‖²_F`` and the codes are ``sign((x - μ) P R)``.

``K > c``: centred one-hot labels have rank ``≤ c - 1``, so at most ``c - 1`` eigenvalues are
non-zero. We still take the top ``K`` eigenvectors of the full-rank regularised problem
(``K ≤ d``), as the paper's code does; their eigenvalue scaling makes the extra columns of
``P`` (numerically) zero, so all ``K`` hyperplanes then live in the informative CCA subspace
and ITQ's rotation spreads that subspace across the ``K`` bits. Float64 numpy throughout.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from dseh_jax.baselines import encoder as encoder_lib
from dseh_jax.baselines import itq

DEFAULT_REG = 1e-4


def check_labels(y: Any, n: int) -> np.ndarray:
  """``y`` as a finite float64 ``[n, c]`` label matrix."""
  if y is None:
    raise ValueError("y_train is None; ITQ-CCA is supervised and needs [n, c] labels")
  y = np.asarray(y, np.float64)
  if y.ndim != 2 or y.shape[0] != n or y.shape[1] < 1:
    raise ValueError(f"y_train has shape {y.shape}; expected [{n}, c] multi-hot labels")
  if not np.all(np.isfinite(y)):
    raise ValueError("y_train holds NaN or inf; expected finite labels")
  return y


def cca_problem(x: Any, y: Any, reg: float = DEFAULT_REG,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(mean [d], A [d, d], B [d, d])`` of ``A w = λ B w``: ``A = C_xy (C_yy + r_y I)⁻¹ C_yx``,
  ``B = C_xx + r_x I`` for features ``x [n, d]`` and labels ``y [n, c]``."""
  x = encoder_lib.check_features(x, "x_train")
  y = check_labels(y, x.shape[0])
  if not reg > 0:
    raise ValueError(f"reg={reg!r}; expected a positive ridge")
  mean = encoder_lib.feature_mean(x)
  cxx = encoder_lib.covariance(x, mean)
  yc = y - y.mean(axis=0)
  cxy = np.zeros((x.shape[1], y.shape[1]))
  size = encoder_lib.DEFAULT_CHUNK_SIZE
  for start, block in zip(range(0, x.shape[0], size), encoder_lib.row_chunks(x, size)):
    cxy += (block - mean).T @ yc[start:start + block.shape[0]]
  cxy /= x.shape[0]
  cyy = yc.T @ yc / x.shape[0]
  rx = reg * (np.trace(cxx) / cxx.shape[0] or 1.0)
  ry = reg * (np.trace(cyy) / cyy.shape[0] or 1.0)
  a = cxy @ np.linalg.solve(cyy + ry * np.eye(cyy.shape[0]), cxy.T)
  return mean, (a + a.T) / 2, cxx + rx * np.eye(cxx.shape[0])


def cca_directions(x: Any, y: Any, bits: int, reg: float = DEFAULT_REG,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Top-``bits`` CCA directions of ``x [n, d]`` against ``y [n, c]`` (``bits ≤ d``).

  Returns ``(mean [d], W [d, bits], λ [bits])``: ``B``-orthonormal eigenvectors of
  :func:`cca_problem` by decreasing ``λ`` (clipped at 0), each signed so its
  largest-magnitude entry is positive.
  """
  bits = encoder_lib.check_bits(bits)
  mean, a, b = cca_problem(x, y, reg)
  d = a.shape[0]
  if bits > d:
    raise ValueError(f"bits={bits}; expected at most the feature dimension d={d}")
  values, vectors = scipy.linalg.eigh(a, b, subset_by_index=(d - bits, d - 1))
  order = np.argsort(values)[::-1]
  values, vectors = values[order], vectors[:, order]
  peak = vectors[np.argmax(np.abs(vectors), axis=0), np.arange(bits)]
  return mean, vectors * np.where(peak < 0, -1.0, 1.0), np.maximum(values, 0.0)


def fit(x_train: Any, y_train: Any, bits: int, key: encoder_lib.KeyLike,
        iterations: int = itq.DEFAULT_ITERATIONS, reg: float = DEFAULT_REG,
        ) -> encoder_lib.LinearHashEncoder:
  """ITQ-CCA encoder of ``bits ≤ d`` bits from ``x_train [n, d]``, ``y_train [n, c]``.

  ``key`` (jax key or int seed) draws ITQ's initial rotation; ``iterations`` B/R updates.
  """
  x = encoder_lib.check_features(x_train, "x_train")
  mean, directions, values = cca_directions(x, y_train, bits, reg)
  projection = directions * values                       # P = W diag(λ)
  v = np.concatenate([(block - mean) @ projection for block in
                      encoder_lib.row_chunks(x, encoder_lib.DEFAULT_CHUNK_SIZE)], axis=0)
  rotation, _ = itq.itq_rotation(v, key, iterations)
  return encoder_lib.LinearHashEncoder(mean=mean, projection=projection @ rotation,
                                       name="itq_cca")
