"""LSH: sign random projections (Charikar, STOC 2002; Andoni & Indyk, CACM 2008; SPEC §8).

Each bit is ``sign(w_k · (x - μ))`` with ``w_k ~ N(0, I_d)`` drawn from the key and ``μ``
the training mean. Two inputs then agree on a bit with probability ``1 - θ / π`` (``θ`` the
angle between their centred vectors), so Hamming distance estimates angle. Centring is what
makes the bits balanced: a random hyperplane through the data mean splits roughly half of
the data on either side, whereas one through the origin puts almost everything on one side
when all features are positive (pixels, ReLU features). Unsupervised: labels are ignored.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from dseh_jax.baselines import encoder as encoder_lib


def random_projection(key: encoder_lib.KeyLike, dim: int, bits: int) -> np.ndarray:
  """Standard Gaussian ``[dim, bits]`` (float64) drawn from ``key`` (jax key or int seed)."""
  w = jax.random.normal(encoder_lib.as_key(key), (int(dim), int(bits)), dtype=np.float32)
  return np.asarray(w, np.float64)


def fit(x_train: Any, y_train: Any, bits: int, key: encoder_lib.KeyLike,
        ) -> encoder_lib.LinearHashEncoder:
  """LSH encoder of ``bits`` bits for inputs like ``x_train [n, d]``.

  ``y_train`` is ignored (unsupervised; accepted for a common baseline signature).
  ``key`` is a ``jax.random`` key or an int seed; the same key gives the same codes.
  ``bits`` may exceed ``d`` (random hyperplanes need not be independent).
  """
  del y_train
  x = encoder_lib.check_features(x_train, "x_train")
  bits = encoder_lib.check_bits(bits)
  mean = encoder_lib.feature_mean(x)
  return encoder_lib.LinearHashEncoder(
      mean=mean, projection=random_projection(key, x.shape[1], bits), name="lsh")
