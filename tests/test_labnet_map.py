"""DSEH's ``map_l``: LabNet's label-to-code retrieval MAP, with the database's label sets
found once per run."""
import types

import numpy as np

from dseh_jax.data.splits import RetrievalData, Split
from dseh_jax.methods import dseh


def _np_stable_map(q_codes, db_codes, q_labels, db_labels):
  """MAP over the whole Hamming ranking, ties in database order, in float64 loops."""
  aps = []
  for code, labels in zip(q_codes, q_labels):
    dist = np.sum(code != db_codes, axis=1)
    order = np.argsort(dist, kind="stable")
    relevant = (db_labels[order] @ labels) > 0
    hits = np.cumsum(relevant)
    ranks = np.arange(1, len(order) + 1)
    aps.append(float(np.sum(hits[relevant] / ranks[relevant]) / max(1, relevant.sum())))
  return float(np.mean(aps))


def _run(seed=0):
  rng = np.random.default_rng(seed)
  labels = (rng.random((90, 4)) < 0.35).astype(np.float32)
  split = lambda s: Split(np.zeros((s.stop - s.start, 1), np.float32), labels[s],
                          np.arange(s.start, s.stop))
  data = RetrievalData("tiny", split(slice(0, 30)), split(slice(30, 45)),
                       split(slice(30, 90)), ("a", "b", "c", "d"))
  proj = rng.standard_normal((4, 6))
  calls = []

  def predict(network, state, label_rows):
    calls.append(len(label_rows))
    return types.SimpleNamespace(codes=np.tanh(label_rows @ proj + 0.1))

  return types.SimpleNamespace(data=data, predict=predict, cache={}), proj, calls


def test_labnet_map_matches_per_item_codes_and_finds_label_sets_once():
  run, proj, calls = _run()
  d = run.data
  codes = lambda rows: np.where(np.tanh(rows @ proj + 0.1) >= 0, 1, -1)
  want = _np_stable_map(codes(d.query.labels), codes(d.database.labels), d.query.labels,
                        d.database.labels)
  first = dseh.labnet_map(run, None)
  sets = run.cache["database_label_sets"]
  second = dseh.labnet_map(run, None)
  assert first == second and abs(first - want) < 1e-9
  assert run.cache["database_label_sets"] is sets                  # not searched again
  distinct = len(np.unique(d.database.labels, axis=0))
  assert calls == [len(d.query), distinct] * 2                     # one pass per label set
