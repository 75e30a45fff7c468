"""Linear sign encoders shared by the shallow hashing baselines (SPEC §8).

A fitted baseline is ``code = sign((x - mean) @ projection - offset)`` with the project's
convention ``sign(0) = +1`` (:func:`dseh_jax.evaluation.binarize`), as int8 ``{-1, +1}``.
Also: :func:`as_key` (a ``jax.random`` key or an int seed) and chunked helpers for the
training mean and covariance, so large feature matrices never get copied to float64 whole.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Optional, Union

import jax
import numpy as np

KeyLike = Union[int, np.integer, jax.Array]

DEFAULT_CHUNK_SIZE = 4096


def as_key(key: KeyLike) -> jax.Array:
  """A ``jax.random`` key from ``key``: an int seed becomes ``jax.random.PRNGKey(seed)``;
  a raw ``uint32 [2]`` key or a typed key passes through unchanged."""
  if isinstance(key, bool):
    raise TypeError(f"key={key!r}; expected a jax.random key or an int seed")
  if isinstance(key, (int, np.integer)):
    return jax.random.PRNGKey(int(key))
  if isinstance(key, jax.Array) or isinstance(key, np.ndarray):
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
      return key
    if key.shape == (2,) and key.dtype == np.uint32:
      return jax.numpy.asarray(key)
  raise TypeError(f"key of type {type(key).__name__}; expected a single jax.random key or "
                  "an int seed")


def check_features(x: Any, name: str = "x_train") -> np.ndarray:
  """``x`` as a 2-D real array ``[n, d]`` with ``n, d ≥ 1`` (no copy when already one)."""
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
    raise ValueError(f"{name} has shape {x.shape}; expected a non-empty [n, d] matrix")
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise ValueError(f"{name} has dtype {x.dtype}; expected real numbers")
  return x


def check_bits(bits: Any) -> int:
  """``bits`` as a positive int."""
  if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
    raise ValueError(f"bits={bits!r}; expected a positive int")
  return int(bits)


def row_chunks(x: np.ndarray, chunk_size: int, dtype=np.float64) -> Iterator[np.ndarray]:
  """Consecutive row blocks of ``x [n, d]`` as fresh ``dtype`` copies (safe to modify in
  place), ``chunk_size`` rows each."""
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) \
      or chunk_size < 1:
    raise ValueError(f"chunk_size={chunk_size!r}; expected a positive int")
  for start in range(0, x.shape[0], int(chunk_size)):
    yield np.array(x[start:start + int(chunk_size)], dtype=dtype, copy=True)


def feature_mean(x: np.ndarray, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
  """Float64 column mean ``[d]`` of ``x [n, d]``, accumulated chunk by chunk."""
  total = np.zeros(x.shape[1], np.float64)
  for block in row_chunks(x, chunk_size):
    total += block.sum(axis=0)
  if not np.all(np.isfinite(total)):
    raise ValueError("x_train holds NaN or inf; expected finite features")
  return total / x.shape[0]


def covariance(x: np.ndarray, mean: np.ndarray,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
  """Float64 covariance ``[d, d]`` (divided by ``n``) of ``x [n, d]`` about ``mean``."""
  cov = np.zeros((x.shape[1], x.shape[1]), np.float64)
  for block in row_chunks(x, chunk_size):
    block -= mean
    cov += block.T @ block
  return cov / x.shape[0]


@dataclasses.dataclass(frozen=True, eq=False)
class LinearHashEncoder:
  """``encode(x) = sign((x - mean) @ projection - offset)``, ``sign(0) = +1``.

  Attributes:
    mean: ``[d]`` centre subtracted from every input (the training mean).
    projection: ``[d, K]`` hash directions.
    offset: ``[K]`` thresholds (zeros when ``None``).
    name: the method, e.g. ``"lsh"`` or ``"itq"``.
  """
  mean: np.ndarray
  projection: np.ndarray
  offset: Optional[np.ndarray] = None
  name: str = "linear"

  def __post_init__(self):
    mean = np.asarray(self.mean, np.float64)
    projection = np.asarray(self.projection, np.float64)
    if projection.ndim != 2 or projection.shape[1] < 1:
      raise ValueError(f"projection has shape {projection.shape}; expected [d, K]")
    d, k = projection.shape
    if mean.shape != (d,):
      raise ValueError(f"mean has shape {mean.shape}; expected [{d}] to match projection")
    offset = (np.zeros(k, np.float64) if self.offset is None
              else np.asarray(self.offset, np.float64))
    if offset.shape != (k,):
      raise ValueError(f"offset has shape {offset.shape}; expected [{k}]")
    for field, value in (("mean", mean), ("projection", projection), ("offset", offset)):
      if not np.all(np.isfinite(value)):
        raise ValueError(f"{field} holds NaN or inf; expected finite values")
      value.setflags(write=False)
      object.__setattr__(self, field, value)

  @property
  def dim(self) -> int:
    """Input dimension ``d``."""
    return self.projection.shape[0]

  @property
  def num_bits(self) -> int:
    """Code length ``K``."""
    return self.projection.shape[1]

  def encode(self, x: Any, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
             dtype=np.float64) -> np.ndarray:
    """Codes of ``x [n, d]`` as int8 ``{-1, +1} [n, K]``.

    Works through ``chunk_size`` rows at a time in ``dtype`` (``np.float64`` or
    ``np.float32``), so memory stays ``O(chunk_size × d)`` whatever ``n``.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise ValueError(f"x has shape {x.shape}; expected [n, {self.dim}]")
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
      raise ValueError(f"dtype={dtype}; expected float64 or float32")
    mean, projection, offset = (a.astype(dtype, copy=False)
                                for a in (self.mean, self.projection, self.offset))
    out = np.empty((x.shape[0], self.num_bits), np.int8)
    start = 0
    for block in row_chunks(x, chunk_size, dtype):
      block -= mean
      z = block @ projection
      z -= offset
      out[start:start + block.shape[0]] = np.where(z >= 0, 1, -1)
      start += block.shape[0]
    return out

  __call__ = encode
