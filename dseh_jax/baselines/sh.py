"""SH: spectral hashing (Weiss, Torralba & Fergus, NIPS 2008; SPEC §8).

Centre the training data and project it onto its top ``p = min(K, d)`` principal directions
``W [d, p]`` (``z = (x - μ) W``). Assuming ``z_j`` uniform on its bounding box ``[a_j, b_j]``
(``r_j = b_j - a_j``), the 1-D Laplacian eigenfunctions and eigenvalues are

  ``Φ_jk(z) = sin(π/2 + kπ (z_j - a_j) / r_j)``,
  ``λ_jk = 1 - exp(-ε²/2 · |kπ / r_j|²)``,   ``k = 1, 2, ...``

SH keeps the ``K`` pairs ``(j, k)`` with the smallest ``λ_jk`` (i.e. the smallest
frequencies ``ω_jk = kπ / r_j``; the order does not depend on ``ε > 0``; ties go to the
lower direction, then the lower mode) and bit ``i`` is ``sign(Φ_{j_i k_i}(z))``, with the
project's ``sign(0) = +1``. Long directions thus get several modes, and ``K`` may exceed ``d``.
Unsupervised (labels ignored) and deterministic (the key is accepted but unused).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from dseh_jax.baselines import encoder as encoder_lib
from dseh_jax.baselines import itq


def eigenvalues(ranges: np.ndarray, modes: np.ndarray, epsilon: float = 1.0) -> np.ndarray:
  """``λ = 1 - exp(-ε²/2 · (kπ / r_j)²)``, ``[K]``, for ``modes [K, 2]`` rows ``(j, k)`` and
  box sides ``ranges [p]``."""
  omega = modes[:, 1] * np.pi / np.asarray(ranges, np.float64)[modes[:, 0]]
  return -np.expm1(-0.5 * epsilon ** 2 * omega ** 2)


def select_modes(ranges: np.ndarray, bits: int) -> np.ndarray:
  """The ``bits`` pairs ``(direction j, mode k ≥ 1)`` with the smallest ``kπ / r_j``, as int64
  ``[bits, 2]`` in increasing eigenvalue order (ties: lower ``j``, then lower ``k``)."""
  ranges = np.asarray(ranges, np.float64)
  j, k = np.meshgrid(np.arange(ranges.size), np.arange(1, bits + 1), indexing="ij")
  j, k = j.ravel(), k.ravel()                             # a direction needs at most K modes
  order = np.lexsort((k, j, k * np.pi / ranges[j]))[:bits]
  return np.stack([j[order], k[order]], axis=1).astype(np.int64)


@dataclasses.dataclass(frozen=True, eq=False)
class SpectralHashEncoder:
  """``encode(x)_i = sign(sin(π/2 + k_i π (z_{j_i} - a_{j_i}) / r_{j_i}))``, ``z = (x - μ) W``.

  Attributes:
    mean: ``[d]`` training mean ``μ``.
    directions: ``[d, p]`` principal directions ``W``.
    mins: ``[p]`` lower corner ``a`` of the training bounding box in PCA space.
    ranges: ``[p]`` box sides ``r = b - a`` (floored at ``1e-12 · max r``, positive).
    modes: int ``[K, 2]`` selected ``(direction j, mode k)`` pairs, by increasing eigenvalue.
    name: ``"sh"``.
  """
  mean: np.ndarray
  directions: np.ndarray
  mins: np.ndarray
  ranges: np.ndarray
  modes: np.ndarray
  name: str = "sh"

  def __post_init__(self):
    directions = np.asarray(self.directions, np.float64)
    if directions.ndim != 2 or directions.shape[1] < 1:
      raise ValueError(f"directions has shape {directions.shape}; expected [d, p]")
    d, p = directions.shape
    modes = np.asarray(self.modes, np.int64)
    if modes.ndim != 2 or modes.shape[1] != 2 or modes.shape[0] < 1:
      raise ValueError(f"modes has shape {modes.shape}; expected [K, 2]")
    if np.any(modes[:, 0] < 0) or np.any(modes[:, 0] >= p) or np.any(modes[:, 1] < 1):
      raise ValueError(f"modes must be (j in [0, {p}), k >= 1) pairs")
    fields = {"mean": (d,), "directions": (d, p), "mins": (p,), "ranges": (p,)}
    for field, shape in fields.items():
      value = np.asarray(getattr(self, field), np.float64)
      if value.shape != shape:
        raise ValueError(f"{field} has shape {value.shape}; expected {list(shape)}")
      if not np.all(np.isfinite(value)):
        raise ValueError(f"{field} holds NaN or inf; expected finite values")
      value.setflags(write=False)
      object.__setattr__(self, field, value)
    if np.any(self.ranges <= 0):
      raise ValueError("ranges must be positive")
    modes.setflags(write=False)
    object.__setattr__(self, "modes", modes)

  @property
  def dim(self) -> int:
    """Input dimension ``d``."""
    return self.directions.shape[0]

  @property
  def num_bits(self) -> int:
    """Code length ``K``."""
    return self.modes.shape[0]

  @property
  def frequencies(self) -> np.ndarray:
    """``ω_i = k_i π / r_{j_i}``, ``[K]`` (non-decreasing)."""
    return self.modes[:, 1] * np.pi / self.ranges[self.modes[:, 0]]

  def encode(self, x: Any, *, chunk_size: int = encoder_lib.DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """Codes of ``x [n, d]`` as int8 ``{-1, +1} [n, K]``, ``chunk_size`` rows at a time."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise ValueError(f"x has shape {x.shape}; expected [n, {self.dim}]")
    j = self.modes[:, 0]
    out = np.empty((x.shape[0], self.num_bits), np.int8)
    start = 0
    for block in encoder_lib.row_chunks(x, chunk_size):
      block -= self.mean
      z = (block @ self.directions)[:, j] - self.mins[j]   # [m, K]
      phi = np.sin(np.pi / 2 + self.frequencies * z)
      out[start:start + block.shape[0]] = np.where(phi >= 0, 1, -1)
      start += block.shape[0]
    return out

  __call__ = encode


def fit(x_train: Any, y_train: Any, bits: int, key: encoder_lib.KeyLike,
        ) -> SpectralHashEncoder:
  """SH encoder of ``bits`` bits fitted on ``x_train [n, d]`` (PCA to ``min(bits, d)``
  dimensions, so needs ``min(bits, d) ≤ n``). ``y_train`` and ``key`` are ignored."""
  del y_train, key
  x = encoder_lib.check_features(x_train, "x_train")
  bits = encoder_lib.check_bits(bits)
  mean, directions, _ = itq.pca_directions(x, min(bits, x.shape[1]))
  lo = np.full(directions.shape[1], np.inf)
  hi = np.full(directions.shape[1], -np.inf)
  for block in encoder_lib.row_chunks(x, encoder_lib.DEFAULT_CHUNK_SIZE):
    z = (block - mean) @ directions
    lo, hi = np.minimum(lo, z.min(axis=0)), np.maximum(hi, z.max(axis=0))
  ranges = hi - lo                                        # a flat direction gets a tiny side,
  ranges = np.maximum(ranges, 1e-12 * (ranges.max() or 1.0))   # so its modes come last
  return SpectralHashEncoder(mean=mean, directions=directions, mins=lo, ranges=ranges,
                             modes=select_modes(ranges, bits))
