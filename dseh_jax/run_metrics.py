"""The retrieval metrics of a run's codes, under the names that results and tables use."""
from __future__ import annotations

from typing import Any

import numpy as np

from dseh_jax import evaluation
from dseh_jax.data.splits import RetrievalData


def metric_key(name: str, policy_index: int, policy: str) -> str:
  """The results key of metric ``name`` (``map``, ``map@K``) under a tie policy: the bare
  name for the first policy of ``eval.ties``, ``<name>_<policy>`` for the others."""
  return name if policy_index == 0 else f"{name}_{policy}"


def metric_columns(eval_config) -> list[tuple[str, str]]:
  """``(column label, results key)`` of the retrieval metrics of ``eval_config``, in table
  order: MAP per tie policy, MAP@top_k per tie policy, P@r≤radius, map_l."""
  ties, k = tuple(eval_config.ties), int(eval_config.top_k)
  names = [("MAP", "map")] + ([(f"MAP@{k}", f"map@{k}")] if k else [])
  columns = [(label + ("" if i == 0 else f" {p}"), metric_key(key, i, p))
             for label, key in names for i, p in enumerate(ties)]
  radius = int(eval_config.radius)
  return columns + [(f"P@r≤{radius}", f"precision_r{radius}"), ("map_l", "map_l")]


def retrieval_metrics(eval_config, q: np.ndarray, db: np.ndarray, data: RetrievalData
                      ) -> tuple[dict[str, Any], evaluation.RetrievalReport]:
  """MAP (and MAP@top_k) of query codes ``q`` against database codes ``db`` under every
  tie policy of ``eval_config``: ``map`` / ``map@K`` for the first policy,
  ``map_<policy>`` / ``map@K_<policy>`` for the others, precision / recall within
  ``eval.radius`` and ``zero_relevant_queries``; and the full report."""
  e, ties = eval_config, tuple(eval_config.ties)
  report = evaluation.evaluate_retrieval(
      q, db, data.query.labels, data.database.labels,
      top_k=int(e.top_k) if e.top_k else (), ties=ties, zero_relevant=e.zero_relevant,
      radius=int(e.radius))
  out: dict[str, Any] = {}
  for i, policy in enumerate(ties):
    out[metric_key("map", i, policy)] = report.map[policy]
    if e.top_k:                      # one cut-off: report it under the configured name
      out[metric_key(f"map@{e.top_k}", i, policy)] = next(iter(report.map_at.values()))[policy]
  out[f"precision_r{report.radius_value}"] = report.radius["precision"]
  out[f"recall_r{report.radius_value}"] = report.radius["recall"]
  out["zero_relevant_queries"] = report.zero_relevant_queries
  return out, report
