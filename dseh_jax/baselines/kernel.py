"""Anchor RBF kernel features and kernel sign encoders for KSH and SDH (SPEC §8).

``m`` anchors ``a_j`` are a random sample (without replacement, drawn from the key) of the
training points; an input ``x`` maps to ``φ(x)_j = exp(-‖x - a_j‖² / (2σ²))``, ``[m]``.
By default ``σ`` is the mean Euclidean distance from the training points to the anchors
(over all ``n × m`` pairs), so the kernel adapts to the data's scale; a fixed ``sigma``
may be passed instead. The codes are ``sign((φ(x) - μ) A - offset)`` with ``μ [m]`` the
training feature mean (KSH's zero-centred kernel; zeros for SDH), ``A [m, K]``, and the
project's ``sign(0) = +1``. Everything is float64 numpy, worked in row chunks.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import numpy as np

from dseh_jax.baselines import encoder as encoder_lib

DEFAULT_NUM_ANCHORS = 300          # m in KSH (Liu et al., CVPR 2012)


def check_labels(y: Any, n: int) -> np.ndarray:
  """Multi-hot labels ``y [n, c]`` as float64 ``{0, 1}`` (any positive entry counts as 1)."""
  y = np.asarray(y)
  if y.ndim != 2 or y.shape[0] != n or y.shape[1] < 1:
    raise ValueError(f"y_train has shape {y.shape}; expected multi-hot [{n}, c] labels")
  if not np.all(np.isfinite(y)):
    raise ValueError("y_train holds NaN or inf; expected multi-hot labels")
  return (y > 0).astype(np.float64)


def sample_anchors(x: np.ndarray, num_anchors: int, key: encoder_lib.KeyLike) -> np.ndarray:
  """``min(num_anchors, n)`` distinct rows of ``x [n, d]`` drawn from ``key`` (the first
  ``m`` of a random permutation), float64 ``[m, d]`` in row order."""
  if isinstance(num_anchors, bool) or not isinstance(num_anchors, (int, np.integer)) \
      or num_anchors < 1:
    raise ValueError(f"num_anchors={num_anchors!r}; expected a positive int")
  m = min(int(num_anchors), x.shape[0])
  index = np.asarray(jax.random.permutation(encoder_lib.as_key(key), x.shape[0]))[:m]
  return np.asarray(x[np.sort(index)], np.float64)


def squared_distances(x: np.ndarray, anchors: np.ndarray,
                      chunk_size: int = encoder_lib.DEFAULT_CHUNK_SIZE) -> np.ndarray:
  """``‖x_i - a_j‖² = ‖x_i‖² - 2 x_i·a_j + ‖a_j‖²`` (clipped at 0), float64 ``[n, m]``."""
  a_sq = np.sum(anchors * anchors, axis=1)
  out = np.empty((x.shape[0], anchors.shape[0]), np.float64)
  start = 0
  for block in encoder_lib.row_chunks(x, chunk_size):
    d2 = block @ anchors.T
    d2 *= -2.0
    d2 += np.sum(block * block, axis=1, keepdims=True) + a_sq
    out[start:start + block.shape[0]] = np.maximum(d2, 0.0)
    start += block.shape[0]
  if not np.all(np.isfinite(out)):
    raise ValueError("x holds NaN or inf; expected finite features")
  return out


def check_sigma(sigma: Any) -> float:
  """``sigma`` as a positive finite float."""
  if isinstance(sigma, bool) or not np.isfinite(sigma) or not sigma > 0:
    raise ValueError(f"sigma={sigma!r}; expected a positive number")
  return float(sigma)


def rbf_features(x: Any, anchors: np.ndarray, sigma: float,
                 chunk_size: int = encoder_lib.DEFAULT_CHUNK_SIZE) -> np.ndarray:
  """``φ(x)_ij = exp(-‖x_i - a_j‖² / (2σ²))``, float64 ``[n, m]``."""
  phi = squared_distances(np.asarray(x), anchors, chunk_size)
  phi *= -0.5 / check_sigma(sigma) ** 2
  return np.exp(phi, out=phi)


def anchor_features(x: np.ndarray, key: encoder_lib.KeyLike,
                    num_anchors: int = DEFAULT_NUM_ANCHORS, sigma: Optional[float] = None,
                    ) -> tuple[np.ndarray, float, np.ndarray]:
  """Anchors, bandwidth and training features of ``x [n, d]``.

  Returns ``(anchors [m, d], sigma, φ(x) [n, m])``; ``sigma=None`` takes the mean
  distance ``mean_ij ‖x_i - a_j‖`` over all training points and anchors.
  """
  anchors = sample_anchors(x, num_anchors, key)
  phi = squared_distances(x, anchors)
  if sigma is None:
    sigma = float(np.mean(np.sqrt(phi)))
    if not sigma > 0:
      raise ValueError("all training points coincide with the anchors; pass sigma")
  phi *= -0.5 / check_sigma(sigma) ** 2
  return anchors, float(sigma), np.exp(phi, out=phi)


@dataclasses.dataclass(frozen=True, eq=False)
class KernelHashEncoder:
  """``encode(x) = sign((φ(x) - feature_mean) @ projection - offset)``, ``sign(0) = +1``.

  Attributes:
    anchors: ``[m, d]`` kernel anchors.
    sigma: RBF bandwidth ``σ``.
    projection: ``[m, K]`` hash directions on the kernel features.
    feature_mean: ``[m]`` centre of the features (zeros when ``None``).
    offset: ``[K]`` thresholds (zeros when ``None``).
    name: the method, e.g. ``"ksh"`` or ``"sdh"``.
  """
  anchors: np.ndarray
  sigma: float
  projection: np.ndarray
  feature_mean: Optional[np.ndarray] = None
  offset: Optional[np.ndarray] = None
  name: str = "kernel"

  def __post_init__(self):
    anchors = np.asarray(self.anchors, np.float64)
    projection = np.asarray(self.projection, np.float64)
    if anchors.ndim != 2 or anchors.shape[0] < 1 or anchors.shape[1] < 1:
      raise ValueError(f"anchors has shape {anchors.shape}; expected [m, d]")
    m = anchors.shape[0]
    if projection.ndim != 2 or projection.shape[0] != m or projection.shape[1] < 1:
      raise ValueError(f"projection has shape {projection.shape}; expected [{m}, K]")
    k = projection.shape[1]
    mean = np.zeros(m) if self.feature_mean is None else np.asarray(self.feature_mean,
                                                                     np.float64)
    offset = np.zeros(k) if self.offset is None else np.asarray(self.offset, np.float64)
    if mean.shape != (m,):
      raise ValueError(f"feature_mean has shape {mean.shape}; expected [{m}]")
    if offset.shape != (k,):
      raise ValueError(f"offset has shape {offset.shape}; expected [{k}]")
    for field, value in (("anchors", anchors), ("projection", projection),
                         ("feature_mean", mean), ("offset", offset)):
      if not np.all(np.isfinite(value)):
        raise ValueError(f"{field} holds NaN or inf; expected finite values")
      value.setflags(write=False)
      object.__setattr__(self, field, value)
    object.__setattr__(self, "sigma", check_sigma(self.sigma))

  @property
  def dim(self) -> int:
    """Input dimension ``d``."""
    return self.anchors.shape[1]

  @property
  def num_bits(self) -> int:
    """Code length ``K``."""
    return self.projection.shape[1]

  def encode(self, x: Any, *, chunk_size: int = encoder_lib.DEFAULT_CHUNK_SIZE,
             ) -> np.ndarray:
    """Codes of ``x [n, d]`` as int8 ``{-1, +1} [n, K]``, ``chunk_size`` rows at a time
    (memory ``O(chunk_size × (d + m))``)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise ValueError(f"x has shape {x.shape}; expected [n, {self.dim}]")
    out = np.empty((x.shape[0], self.num_bits), np.int8)
    start = 0
    for block in encoder_lib.row_chunks(x, chunk_size):
      z = (rbf_features(block, self.anchors, self.sigma, chunk_size) - self.feature_mean
           ) @ self.projection - self.offset
      out[start:start + block.shape[0]] = np.where(z >= 0, 1, -1)
      start += block.shape[0]
    return out

  __call__ = encode
