"""Shallow hashing baselines on feature vectors (SPEC §8).

Unsupervised: LSH (random projections), SH (spectral hashing), ITQ (PCA + iterative
quantisation). Supervised (labels ``y_train [n, c]``): ITQ-CCA (CCA, then the ITQ
rotation), KSH (kernels with anchors), SDH (supervised discrete hashing).

Every method is ``fit(x_train [n, d], y_train, bits, key) -> encoder``;
``encoder.encode(x [m, d])`` gives int8 ``{-1, +1}`` codes ``[m, bits]`` for
:func:`dseh_jax.evaluation.evaluate_retrieval`. ``key`` is a ``jax.random`` key or an int
seed.
"""
from __future__ import annotations

from typing import Any, Callable

from dseh_jax.baselines import itq, itq_cca, ksh, lsh, sdh, sh
from dseh_jax.baselines.encoder import LinearHashEncoder, as_key

FITTERS: dict[str, Callable[..., Any]] = {
    "lsh": lsh.fit, "sh": sh.fit, "itq": itq.fit, "itq_cca": itq_cca.fit, "ksh": ksh.fit,
    "sdh": sdh.fit}
SUPERVISED = ("itq_cca", "ksh", "sdh")


def fit(name: str, x_train: Any, y_train: Any, bits: int, key: Any, **params: Any) -> Any:
  """Fits baseline ``name`` (a key of ``FITTERS``) with ``bits`` bits and its keyword
  ``params`` (e.g. KSH's ``num_anchors``); see its module."""
  if name not in FITTERS:
    raise ValueError(f"name={name!r}; expected one of {sorted(FITTERS)}")
  return FITTERS[name](x_train, y_train, bits, key, **params)


def fit_and_evaluate(name: str, data: Any, bits: int, seed: int,
                     **params: Any) -> tuple[dict[str, Any], Any]:
  """Fits ``name`` (with ``params``) on ``data.train`` (inputs flattened to vectors) and
  scores its query codes against its database codes: ``(metrics, report)`` with MAP under
  both tie policies and ``nh`` (distinct database codes), and the full
  :class:`~dseh_jax.evaluation.RetrievalReport` (curves)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from dseh_jax import evaluation  # pylint: disable=import-outside-toplevel
  flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)
  encoder = fit(name, flat(data.train.inputs), data.train.labels, bits, seed, **params)
  q, db = encoder.encode(flat(data.query.inputs)), encoder.encode(flat(data.database.inputs))
  report = evaluation.evaluate_retrieval(q, db, data.query.labels, data.database.labels,
                                         ties=("stable", "tie_aware"))
  return ({"map": report.map["stable"], "map_tie_aware": report.map["tie_aware"],
           "nh": evaluation.distinct_codes(db)}, report)
