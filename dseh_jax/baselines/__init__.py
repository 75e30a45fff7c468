"""Unsupervised shallow hashing baselines (SPEC §8): LSH and ITQ.

Every method is ``fit(x_train [n, d], y_train, bits, key) -> LinearHashEncoder``;
``encoder.encode(x [m, d])`` gives int8 ``{-1, +1}`` codes ``[m, bits]`` for
:func:`dseh_jax.evaluation.evaluate_retrieval`. ``key`` is a ``jax.random`` key or an int
seed.
"""
from __future__ import annotations

from typing import Any, Callable

from dseh_jax.baselines import itq, lsh
from dseh_jax.baselines.encoder import LinearHashEncoder, as_key

FITTERS: dict[str, Callable[..., LinearHashEncoder]] = {"lsh": lsh.fit, "itq": itq.fit}


def fit(name: str, x_train: Any, y_train: Any, bits: int, key: Any) -> LinearHashEncoder:
  """Fits baseline ``name`` (a key of ``FITTERS``) with ``bits`` bits; see its module."""
  if name not in FITTERS:
    raise ValueError(f"name={name!r}; expected one of {sorted(FITTERS)}")
  return FITTERS[name](x_train, y_train, bits, key)
