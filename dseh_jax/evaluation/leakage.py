"""Leakage guard: are query items also in the database or the training set? (SPEC §6)

Some released list files put the query images in the database as well (HashNet's MS-COCO
lists hold all 5,000 queries in the database, SPEC §6); a query that finds itself at
distance 0 inflates MAP. Items are matched by their stable ids (the same source item has
the same id in every split, ``dseh_jax.data.splits.Split``).

Counts are of *rows*: ``query_in_database`` is the number of query rows whose id occurs
in the database (a repeated query id counts each time). ``train_in_database`` is reported
but never refused: in the authors' protocol the database is train ∪ retrieval set.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

_EXAMPLES = 5


def _ids(ids: np.ndarray, name: str) -> np.ndarray:
  ids = np.asarray(ids)
  if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
    raise ValueError(f"{name} has dtype {ids.dtype} and shape {ids.shape}; expected [n] "
                     "integer ids")
  return ids.astype(np.int64, copy=False)


@dataclasses.dataclass(frozen=True)
class OverlapReport:
  """Row counts of ids shared between splits (module docstring).

  ``*_examples`` list up to five shared ids (in the first split's order) for messages.
  ``query_in_train`` and ``train_in_database`` are ``None`` when no train ids were given.
  """
  num_query: int
  num_database: int
  num_train: Optional[int]
  query_in_database: int
  query_in_train: Optional[int]
  train_in_database: Optional[int]
  query_in_database_examples: tuple[int, ...] = ()
  query_in_train_examples: tuple[int, ...] = ()

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    for name in ("query_in_database_examples", "query_in_train_examples"):
      out[name] = list(out[name])
    return out


def overlap_report(query_ids: np.ndarray, database_ids: np.ndarray,
                   train_ids: Optional[np.ndarray] = None) -> OverlapReport:
  """Counts query rows whose id is in the database / in the training set, and training
  rows whose id is in the database.

  Args:
    query_ids: ``[nq]`` integer ids; database_ids: ``[nd]``; train_ids: ``[nt]`` or None.
  """
  q = _ids(query_ids, "query_ids")
  db = _ids(database_ids, "database_ids")
  in_db = np.isin(q, db)
  report = dict(num_query=int(q.size), num_database=int(db.size), num_train=None,
                query_in_database=int(in_db.sum()), query_in_train=None,
                train_in_database=None,
                query_in_database_examples=tuple(int(i) for i in q[in_db][:_EXAMPLES]))
  if train_ids is not None:
    tr = _ids(train_ids, "train_ids")
    in_train = np.isin(q, tr)
    report.update(num_train=int(tr.size), query_in_train=int(in_train.sum()),
                  train_in_database=int(np.isin(tr, db).sum()),
                  query_in_train_examples=tuple(int(i) for i in q[in_train][:_EXAMPLES]))
  return OverlapReport(**report)


def check_protocol(report: OverlapReport, *, allow_query_in_database: bool = False,
                   allow_query_in_train: bool = False, where: str = "evaluation"
                   ) -> OverlapReport:
  """Raises ``ValueError`` when queries leak into the database or the training set,
  unless that overlap is explicitly allowed; returns ``report``.

  Args:
    report: from :func:`overlap_report`.
    allow_query_in_database: accept queries that are also database items (e.g. to
      reproduce numbers on HashNet's MS-COCO lists, SPEC §6).
    allow_query_in_train: accept queries that are also training items.
    where: names the caller in the message (a command, a run folder, a dataset).
  """
  problems = []
  if report.query_in_database and not allow_query_in_database:
    problems.append(
        f"{report.query_in_database} of {report.num_query} queries are also in the "
        f"database (ids e.g. {list(report.query_in_database_examples)}); each finds itself "
        "at Hamming distance 0, which inflates MAP")
  if report.query_in_train and not allow_query_in_train:
    problems.append(
        f"{report.query_in_train} of {report.num_query} queries are also training items "
        f"(ids e.g. {list(report.query_in_train_examples)}); the network has seen them")
  if problems:
    raise ValueError(f"{where}: query leakage: " + "; ".join(problems) + ". Fix the "
                     "splits, or allow the overlap explicitly (allow_query_in_database / "
                     "allow_query_in_train; --allow_overlap on the command line) and report "
                     "it with the results")
  return report
