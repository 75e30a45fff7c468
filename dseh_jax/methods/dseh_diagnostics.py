"""DSEH's diagnostics (SPEC §7): LabNet's label-retrieval MAP ``map_l`` and the one-line
message of a collapsed round (:class:`dseh_jax.methods.dseh.DSEH`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from dseh_jax import evaluation
from dseh_jax.methods.base import LABNET, RunContext


def labnet_outputs(run: RunContext, labnet_rep, labels: np.ndarray) -> Any:
  return run.predict(LABNET, labnet_rep, labels)


def labnet_map(run: RunContext, labnet_rep) -> float:
  """``map_l``: retrieval of database labels by query labels through LabNet's codes."""
  data = run.data
  q = labnet_outputs(run, labnet_rep, data.query.labels).codes
  db_labels, inverse = database_label_sets(run)
  db = labnet_outputs(run, labnet_rep, db_labels).codes[inverse]
  return evaluation.mean_average_precision(
      evaluation.binarize(q), evaluation.binarize(db), data.query.labels, data.database.labels)


def database_label_sets(run: RunContext) -> tuple[np.ndarray, np.ndarray]:
  """``(sets [u, c], inverse [n_db])``: the database's distinct label sets and each item's
  row among them, found once per run (``run.cache``; 1.1 s on NUS-WIDE's 193,734 items)."""
  if "database_label_sets" not in run.cache:
    sets, inverse = np.unique(run.data.database.labels, axis=0, return_inverse=True)
    run.cache["database_label_sets"] = (sets, inverse.reshape(-1))
  return run.cache["database_label_sets"]


def collapse_message(run: RunContext, summary: dict[str, Any]) -> tuple[str, str]:
  """``(what happened, what to try)`` for a collapsed LabNet or ImgNet round summary."""
  r, k = summary["round"], run.num_bits
  if summary["kind"] == "imgnet_round":
    return (f"ImgNet's codes are degenerate after the last round ({r}) at {k} bits: bit "
            f"agreement with LabNet's codes {summary['bit_agreement']:.3f} (at least "
            f"collapse_min_bit_agreement={run.config.collapse_min_bit_agreement} "
            f"expected), nh = {summary['nh']} distinct training codes (floor "
            f"{summary.get('nh_floor', 2)})",
            "if the loss diverged, lower imgnet.optimizer.lr; if it under-fit, raise "
            "imgnet.optimizer.lr or imgnet.epochs_per_round, or standardise the inputs "
            "(data.standardize='zscore')")
  distinct = int(np.unique(run.data.train.labels, axis=0).shape[0])
  healthy_before = any(not h.get("collapsed") for h in run.history
                       if h["kind"] == "labnet_round" and h["round"] < r)
  return (f"LabNet collapsed in round {r} at {k} bits: nh = {summary['nh']} distinct "
          f"codes for {distinct} distinct training label sets (floor "
          f"{summary['nh_floor']}), {summary['dead_semantic_units']} of "
          f"{run.config.labnet.semantic_units} semantic units dead, map_l = "
          f"{summary['map_l']:.4f}",
          "ImgNet did not fit LabNet's codes in the previous round; raise "
          "imgnet.optimizer.lr or imgnet.epochs_per_round" if healthy_before else
          "lower labnet.optimizer.lr, or use the default recipe (--choices recipe: "
          "Adam, losses as means)")
