"""Hyper-parameter selection on a validation split carved from the training set (SPEC §5).

The paper chooses its learning rate "on a validation set"; the queries must never be used
for it. :func:`validation_data` holds out a seeded sample of the training points as
validation queries and ranks them against the remaining training points; every grid point
is trained on those remaining points only, and scored by the tie-aware MAP of the
validation queries (a collapsed code cannot score well under it, unlike under a stable tie
order). :func:`select` runs the grid and returns the best point; the caller then trains on
the whole training set with it (``experiments/train_dseh.py --select``).
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import itertools
import logging
import os
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from dseh_jax.data.splits import RetrievalData, Split
from dseh_jax.atomic_io import write_json

log = logging.getLogger("dseh_jax")

SCORE = "map_tie_aware"
SEED_SALT = 0x7A11D
DATABASES = ("train", "heldout")


def validation_data(data: RetrievalData, *, fraction: float = 0.2, seed: int = 0,
                    database: str = "train") -> RetrievalData:
  """``data`` re-cut for validation: train = the training points not held out; the held-out
  ``fraction`` of them (seeded) are the queries, and the database is the training points
  (``database="train"``) or, with ``"heldout"``, the second half of the held-out points
  (the first half are the queries). Ids are kept.

  ``"train"`` ranks unseen queries against codes the run fitted; ``"heldout"`` ranks unseen
  against unseen, as the real protocols mostly do (CIFAR-10: 54,000 of the 59,000 database
  images are not trained on), and so also scores how the codes generalise."""
  if database not in DATABASES:
    raise ValueError(f"validation database={database!r}; expected one of {DATABASES}")
  n = len(data.train)
  n_val = int(round(fraction * n)) if 0.0 < fraction < 1.0 else 0   # NaN, inf: refused
  if not 0.0 < fraction < 1.0 or n_val < 1 or n - n_val < 2:
    raise ValueError(f"validation fraction={fraction!r} of {n} training points leaves "
                     f"{n_val} validation and {n - n_val} training points; expected a "
                     "fraction in (0, 1) that leaves both non-empty")
  rng = np.random.default_rng([int(seed), SEED_SALT])
  held = np.zeros(n, bool)
  held[rng.choice(n, size=n_val, replace=False)] = True
  take = lambda s, m: Split(s.inputs[np.flatnonzero(m)], s.labels[m], s.ids[m])
  fit, val = take(data.train, ~held), take(data.train, held)
  stats = {"validation_of": data.name, "fraction": fraction, "seed": int(seed),
           "train": len(fit), "validation": len(val)}
  if database == "train":
    return RetrievalData(f"{data.name}:validation", fit, val, fit, data.class_names,
                         stats=stats)
  if n_val < 2:
    raise ValueError(f"validation database='heldout' needs at least 2 held-out points, "
                     f"got {n_val} (fraction={fraction!r} of {n})")
  order = rng.permutation(n_val)
  half = np.zeros(n_val, bool)
  half[order[:(n_val + 1) // 2]] = True
  query, base = take(val, half), take(val, ~half)
  stats.update(validation=len(query), database=len(base))
  return RetrievalData(f"{data.name}:validation", fit, query, base, data.class_names,
                       stats=stats)


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
  """``--select`` items ``["KEY=V1,V2", ...]`` → ``{KEY: [V1, V2]}``, each value a Python
  literal where it parses and text otherwise."""
  grid = {}
  for item in items:
    key, sep, raw = item.partition("=")
    if not sep or not raw:
      raise ValueError(f"--select {item!r}: expected KEY=V1,V2,...")
    values = []
    for text in raw.split(","):
      try:
        values.append(ast.literal_eval(text))
      except (ValueError, SyntaxError):
        values.append(text)
    grid[key] = values
  return grid


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
  """Every combination of ``{dotted config field: values}``, in the order given."""
  keys = list(grid)
  return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def set_field(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  """``config.<dotted> = value``, keeping the field's type (an int given for a float field
  becomes a float); an unknown field is a ValueError naming it."""
  *parents, leaf = dotted.split(".")
  node = config
  for name in parents:
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or name not in node:
      raise ValueError(f"selection grid field {dotted!r}: the config has no {name!r}")
    node = node[name]
  if not isinstance(node, (ml_collections.ConfigDict, dict)) or leaf not in node:
    raise ValueError(f"selection grid field {dotted!r}: the config has no field {leaf!r}")
  if isinstance(node[leaf], float) and isinstance(value, int):
    value = float(value)
  node[leaf] = value


@dataclasses.dataclass
class Selection:
  """The grid's scores on the validation split and the point chosen."""
  best: dict[str, Any]
  rows: list[dict[str, Any]]       # {"point", "score", "map", "nh"} per grid point
  bits: int
  fraction: float
  database: str = "train"          # what the validation queries were ranked against

  def to_dict(self) -> dict[str, Any]:
    return {"best": self.best, "score": SCORE, "bits": self.bits,
            "validation_fraction": self.fraction, "validation_database": self.database,
            "rows": self.rows}

  def markdown(self) -> str:
    keys = list(self.best)
    lines = ["| " + " | ".join(keys) + " | val MAP tie-aware | val MAP | nh | chosen |",
             "|" + "---|" * (len(keys) + 4)]
    for row in self.rows:
      chosen = "←" if row["point"] == self.best else ""
      cells = [f"{row['point'][k]:g}" if isinstance(row["point"][k], float)
               else str(row["point"][k]) for k in keys]
      lines.append("| " + " | ".join(cells) + f" | {row['score']:.4f} | {row['map']:.4f} | "
                   f"{row['nh']} | {chosen} |")
    return "\n".join(lines)


def select(config: ml_collections.ConfigDict, data: RetrievalData,
           grid: Mapping[str, Sequence[Any]], workdir: str, *, bits: int | None = None,
           fraction: float = 0.2, database: str = "train", progress: bool = False
           ) -> Selection:
  """Trains one run per grid point on :func:`validation_data` of ``data`` and returns the
  point with the best tie-aware validation MAP (ties: the first point). A point whose run
  collapses scores what its codes score (``on_collapse="warn"`` inside the search)."""
  from dseh_jax.experiment import train_and_evaluate  # pylint: disable=import-outside-toplevel
  points = grid_points(grid)
  if not grid or not points:              # {} has one (empty) point: nothing to choose
    raise ValueError("the selection grid is empty")
  bits = int(bits or tuple(config.bits)[0])
  val = validation_data(data, fraction=fraction, seed=int(config.seed), database=database)
  rows = []
  for i, point in enumerate(points):
    cfg = copy.deepcopy(config)
    for key, value in point.items():
      set_field(cfg, key, value)
    cfg.bits = (bits,)
    cfg.on_collapse = "warn"
    result = train_and_evaluate(cfg, val, os.path.join(workdir, f"point{i}"),
                                progress=progress)["bits"][str(bits)]
    score = result.get(SCORE, result["map"])
    rows.append({"point": point, "score": float(score), "map": float(result["map"]),
                 "nh": result.get("nh")})
    log.info("selection %d/%d %s: validation MAP tie-aware %.4f", i + 1, len(points), point,
             score)
  best = max(rows, key=lambda r: r["score"])["point"]
  selection = Selection(best, rows, bits, fraction, database)
  write_json(os.path.join(workdir, "selection.json"), selection.to_dict())
  return selection


def select_shallow(name: str, data: RetrievalData, grid: Mapping[str, Sequence[Any]], *,
                   bits: int, seed: int, fraction: float = 0.2) -> Selection:
  """The keyword arguments of shallow baseline ``name`` (``dseh_jax.baselines``; e.g.
  ``{"num_anchors": [300, 1000]}`` for KSH) with the best tie-aware MAP on
  :func:`validation_data` of ``data`` (ties: the first point); the queries are never used."""
  from dseh_jax import baselines  # pylint: disable=import-outside-toplevel
  points = grid_points(grid)
  if not grid or not points:
    raise ValueError("the selection grid is empty")
  val = validation_data(data, fraction=fraction, seed=seed)
  rows = []
  for point in points:
    metrics, _ = baselines.fit_and_evaluate(name, val, bits, seed, **point)
    rows.append({"point": point, "score": float(metrics[SCORE]),
                 "map": float(metrics["map"]), "nh": metrics["nh"]})
    log.info("selection %s %s: validation MAP tie-aware %.4f", name, point, rows[-1]["score"])
  best = max(rows, key=lambda r: r["score"])["point"]
  return Selection(best, rows, bits, fraction)
