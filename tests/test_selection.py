"""Hyper-parameter selection on a validation split of the training set (SPEC §5)."""
import copy
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dseh_jax import configs, selection
from dseh_jax.data.registry import load_dataset
from dseh_jax.data.splits import RetrievalData, Split
from dseh_jax.experiment import train_and_evaluate
from test_trainer import ROOT, tiny_config

GRID = {"imgnet.optimizer.lr": [1e-3, 1e-2]}
# One short round on 40 training mosaics: 8 validation queries against 32 points.
SMALL = {"num_query": 16, "num_train": 40, "num_retrieval": 24}
TINY_SELECT = [
    "data.kwargs.num_query=16", "data.kwargs.num_train=40", "data.kwargs.num_retrieval=24",
    "labnet.hidden_units=64", "labnet.semantic_units=16", "imgnet.semantic_units=16",
    "labnet.batch_size=16", "imgnet.batch_size=16", "eval.batch_size=32",
    "labnet.epochs_per_round=(1,)", "imgnet.epochs_per_round=(1,)", "eval.top_k=0",
    "on_collapse=warn", "checkpoint_min_seconds=0.0",
]


def small_config():
  c = tiny_config()
  c.data.kwargs.update(SMALL)
  c.labnet.epochs_per_round = (1,)
  c.imgnet.epochs_per_round = (1,)
  c.eval.top_k = 0
  return c


def _toy(n=20, ids0=100):
  """A dataset whose train row ``i`` has inputs ``[i, -i]`` and id ``100 + 7 i``."""
  rng = np.random.default_rng(0)
  x = np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32)
  labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
  train = Split(x, labels, (ids0 + 7 * np.arange(n)).astype(np.int64))
  query = Split(x[:3] + 0.5, labels[:3], np.arange(3, dtype=np.int64))
  return RetrievalData("toy", train, query, train, ("a", "b", "c")).validate()


# ---------------------------------------------------------------------------------------
# validation_data, grid_points, set_field


def test_validation_data_holds_out_train_rows():
  data = _toy(20)
  val = selection.validation_data(data, fraction=0.25, seed=3)
  assert val.name == "toy:validation" and val.class_names == data.class_names
  assert (len(val.query), len(val.train), len(val.database)) == (5, 15, 15)
  q, t = val.query.ids, val.train.ids
  assert not np.intersect1d(q, t).size
  np.testing.assert_array_equal(np.sort(np.concatenate([q, t])), np.sort(data.train.ids))
  assert not np.intersect1d(q, data.query.ids).size           # the real queries: never
  np.testing.assert_array_equal(val.database.ids, t)          # database = remaining train
  np.testing.assert_array_equal(val.database.inputs, val.train.inputs)
  # every row keeps its id, inputs and labels; the remaining rows keep their order
  for split in (val.train, val.query):
    row = (split.ids - 100) // 7
    np.testing.assert_array_equal(split.inputs[:, 0], row)
    np.testing.assert_array_equal(split.labels, data.train.labels[row])
  np.testing.assert_array_equal(t, data.train.ids[~np.isin(data.train.ids, q)])
  assert val.stats == {"validation_of": "toy", "fraction": 0.25, "seed": 3, "train": 15,
                       "validation": 5}
  val.validate()


def test_validation_data_heldout_database_is_unseen_and_disjoint():
  data = _toy(40)
  train_db = selection.validation_data(data, fraction=0.25, seed=3)
  val = selection.validation_data(data, fraction=0.25, seed=3, database="heldout")
  np.testing.assert_array_equal(val.train.ids, train_db.train.ids)   # the same fit rows
  q, db, t = val.query.ids, val.database.ids, val.train.ids
  assert (len(q), len(db), len(t)) == (5, 5, 30)
  assert not np.intersect1d(q, db).size and not np.intersect1d(np.concatenate([q, db]), t).size
  np.testing.assert_array_equal(np.sort(np.concatenate([q, db])), np.sort(train_db.query.ids))
  for split in (val.query, val.database):
    row = (split.ids - 100) // 7
    np.testing.assert_array_equal(split.inputs[:, 0], row)
    np.testing.assert_array_equal(split.labels, data.train.labels[row])
  assert val.stats["validation"] == 5 and val.stats["database"] == 5
  again = selection.validation_data(data, fraction=0.25, seed=3, database="heldout")
  np.testing.assert_array_equal(again.query.ids, q)
  val.validate()
  with pytest.raises(ValueError, match="validation database='query'; expected one of"):
    selection.validation_data(data, database="query")


def test_validation_data_is_seeded():
  data = _toy(30)
  a = selection.validation_data(data, fraction=0.2, seed=0)
  b = selection.validation_data(data, fraction=0.2, seed=0)
  c = selection.validation_data(data, fraction=0.2, seed=1)
  np.testing.assert_array_equal(a.query.ids, b.query.ids)
  assert not np.array_equal(np.sort(a.query.ids), np.sort(c.query.ids))
  assert len(selection.validation_data(data, fraction=0.5).query) == 15


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, 0.01, 0.95, float("nan"),
                                      float("inf")])
def test_validation_data_bad_fraction(fraction):
  with pytest.raises(ValueError, match="validation fraction=.* of 20 training points"):
    selection.validation_data(_toy(20), fraction=fraction)


def test_grid_points_order_and_product():
  points = selection.grid_points({"a": [1, 2], "b.c": ["x", "y", "z"]})
  assert points == [{"a": a, "b.c": b} for a in (1, 2) for b in ("x", "y", "z")]
  assert [list(p) for p in points] == [["a", "b.c"]] * 6
  assert selection.grid_points({"b": [3], "a": [2, 1]}) == [{"b": 3, "a": 2},
                                                           {"b": 3, "a": 1}]
  assert selection.grid_points({"a": [1], "b": []}) == []


def test_set_field_coerces_and_names_unknown_fields():
  c = configs.get_config("digits")
  selection.set_field(c, "imgnet.optimizer.lr", 1)
  assert c.imgnet.optimizer.lr == 1.0 and isinstance(c.imgnet.optimizer.lr, float)
  selection.set_field(c, "labnet.batch_size", 8)
  assert c.labnet.batch_size == 8 and isinstance(c.labnet.batch_size, int)
  selection.set_field(c, "data.standardize", "none")
  assert c.data.standardize == "none"
  selection.set_field(c, "seed", 4)
  assert c.seed == 4
  with pytest.raises(TypeError):
    selection.set_field(c, "imgnet.optimizer.lr", "fast")        # the field's type is kept
  with pytest.raises(ValueError, match="'imgnet.optimizer.lrr'.*no field 'lrr'"):
    selection.set_field(c, "imgnet.optimizer.lrr", 1e-3)
  with pytest.raises(ValueError, match="'imgnet.optimiser.lr'.*no 'optimiser'"):
    selection.set_field(c, "imgnet.optimiser.lr", 1e-3)
  with pytest.raises(ValueError, match="'seed.x'"):
    selection.set_field(c, "seed.x", 1)
  with pytest.raises(ValueError, match="'seed.x.y'.*no 'x'"):
    selection.set_field(c, "seed.x.y", 1)
  assert c.imgnet.optimizer.lr == 1.0                         # unchanged by the failures


def test_select_refuses_an_empty_grid(tmp_path):
  data = _toy(20)
  for grid in ({}, {"imgnet.optimizer.lr": []}):
    with pytest.raises(ValueError, match="grid is empty"):
      selection.select(small_config(), data, grid, str(tmp_path))
  assert not os.listdir(tmp_path)


# ---------------------------------------------------------------------------------------
# select end to end


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
  """``select`` of GRID on the small digits config: (config, config before, data, workdir,
  the Selection)."""
  config = small_config()
  config.on_collapse = "stop"                   # select switches it to "warn" inside
  data = load_dataset(config.data, seed=config.seed)
  workdir = tmp_path_factory.mktemp("select")
  before = copy.deepcopy(config)
  chosen = selection.select(config, data, GRID, str(workdir), bits=8)
  return config, before, data, workdir, chosen


@pytest.mark.slow
def test_select_scores_points_on_the_validation_split(selected):
  config, before, data, tmp_path, chosen = selected
  assert config.to_dict() == before.to_dict()   # the caller's config is not edited
  assert chosen.bits == 8 and chosen.fraction == 0.2
  assert [r["point"] for r in chosen.rows] == [{"imgnet.optimizer.lr": v}
                                               for v in GRID["imgnet.optimizer.lr"]]
  scores = [r["score"] for r in chosen.rows]
  assert chosen.best == chosen.rows[int(np.argmax(scores))]["point"]
  on_disk = json.loads((tmp_path / "selection.json").read_text())
  assert on_disk == json.loads(json.dumps(chosen.to_dict()))
  assert on_disk["score"] == "map_tie_aware" and on_disk["best"] == chosen.best
  table = chosen.markdown()
  assert table.count("←") == 1 and "| imgnet.optimizer.lr |" in table
  val = selection.validation_data(data, fraction=0.2, seed=config.seed)
  for i, row in enumerate(chosen.rows):
    assert 0.0 <= row["score"] <= 1.0 and 1 <= row["nh"] <= 2 ** 8
    codes = np.load(tmp_path / f"point{i}" / "bits8" / "codes.npz")
    # ranked: held-out training points against the rest of train; never a real query
    np.testing.assert_array_equal(codes["query_ids"], val.query.ids)
    np.testing.assert_array_equal(codes["database_ids"], val.train.ids)
    assert not np.intersect1d(codes["query_ids"], data.query.ids).size
    assert np.isin(codes["query_ids"], data.train.ids).all()
    results = json.loads((tmp_path / f"point{i}" / "results.json").read_text())
    assert results["config"]["imgnet"]["optimizer"]["lr"] == row["point"][
        "imgnet.optimizer.lr"]
    assert results["config"]["on_collapse"] == "warn"
    assert results["dataset"]["query"] == 8 and results["dataset"]["train"] == 32
  # The best point's score, recomputed by an independent run on the validation split.
  i = int(np.argmax(scores))
  cfg = copy.deepcopy(config)
  cfg.imgnet.optimizer.lr = chosen.best["imgnet.optimizer.lr"]
  cfg.bits = (8,)
  cfg.on_collapse = "warn"
  again = train_and_evaluate(cfg, val, str(tmp_path / "again"), progress=False)["bits"]["8"]
  assert _jsonable(cfg) == json.loads(
      (tmp_path / f"point{i}" / "results.json").read_text())["config"]
  assert again["map_tie_aware"] == pytest.approx(chosen.rows[i]["score"], abs=1e-12)
  assert again["map"] == pytest.approx(chosen.rows[i]["map"], abs=1e-12)
  # and the tie-aware MAP of the saved codes, by brute force over tied groups
  codes = np.load(tmp_path / f"point{i}" / "bits8" / "codes.npz")
  assert _tie_aware_map(codes["query_codes"], codes["database_codes"], val.query.labels,
                        val.database.labels) == pytest.approx(chosen.rows[i]["score"],
                                                              abs=1e-9)


def _tie_aware_map(q, db, q_labels, db_labels):
  """Mean over queries of the expected AP over uniformly random orders within tied Hamming
  distance groups (0 for a query without relevant items), by linearity of expectation:
  a position ``j`` of a group of ``n`` holding ``h`` relevant items is relevant with
  probability ``h / n``, and then ``(j - 1) (h - 1) / (n - 1)`` of the group's other relevant
  items are expected before it."""
  k = q.shape[1]
  dist = (k - q.astype(np.int64) @ db.astype(np.int64).T) // 2
  rel = (q_labels @ db_labels.T) > 0
  aps = []
  for d, r in zip(dist, rel):
    total = r.sum()
    if total == 0:
      aps.append(0.0)
      continue
    ap, seen, hits_before = 0.0, 0, 0
    for value in np.unique(d):
      group = d == value
      n, h = int(group.sum()), int(r[group].sum())
      if h:
        # expected sum over the group's relevant items of precision at their rank, with
        # the h relevant items uniformly placed among the n tied positions
        for j in range(1, n + 1):            # position within the group
          p_rel = h / n
          exp_hits = hits_before + 1 + (h - 1) * (j - 1) / max(n - 1, 1)
          ap += p_rel * exp_hits / (seen + j)
      seen, hits_before = seen + n, hits_before + h
    aps.append(ap / total)
  return float(np.mean(aps))


def test_tie_aware_reference_matches_enumeration():
  """The reference above against the mean AP over every order of the tied items."""
  rng = np.random.default_rng(5)
  q = rng.choice([-1, 1], size=(3, 2))
  db = rng.choice([-1, 1], size=(7, 2))
  q_labels = np.eye(3)[[0, 1, 2]]
  db_labels = np.eye(3)[rng.integers(0, 2, 7)]                # class 2: no relevant items
  dist = (2 - q @ db.T) // 2
  rel = (q_labels @ db_labels.T) > 0
  want = []
  for d, r in zip(dist, rel):
    if not r.any():
      want.append(0.0)
      continue
    aps = []
    for perm in itertools.permutations(range(7)):
      order = np.array(perm)[np.argsort(d[list(perm)], kind="stable")]
      ranked = r[order]
      hits = np.cumsum(ranked)
      aps.append(np.sum(ranked * hits / np.arange(1, 8)) / hits[-1])
    want.append(np.mean(aps))
  assert _tie_aware_map(q, db, q_labels, db_labels) == pytest.approx(np.mean(want),
                                                                     abs=1e-12)


# ---------------------------------------------------------------------------------------
# The command line


def _cli(workdir, select):
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "train_dseh.py"), "--config",
         "digits", "--config.bits=8", "--workdir", str(workdir), "--no_progress",
         "--select", select]
  return cmd + [f"--config.{item}" for item in TINY_SELECT]


def _env():
  return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
              JAX_PLATFORMS="cpu")


def _jsonable(config):
  return json.loads(config.to_json())


@pytest.mark.slow
def test_cli_select_trains_with_the_best_point(tmp_path, selected):
  done = subprocess.run(_cli(tmp_path, "imgnet.optimizer.lr=1e-3,1e-2"), env=_env(),
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "Validation split (20% of the training set), 8 bits:" in done.stdout
  assert "| imgnet.optimizer.lr | val MAP tie-aware | val MAP | nh | chosen |" in done.stdout
  assert "| 0.001 |" in done.stdout and "| 0.01 |" in done.stdout
  chosen = json.loads((tmp_path / "selection" / "selection.json").read_text())
  assert [r["point"]["imgnet.optimizer.lr"] for r in chosen["rows"]] == [1e-3, 1e-2]
  best_row = max(chosen["rows"], key=lambda r: r["score"])
  assert chosen["best"] == best_row["point"]
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["config"]["imgnet"]["optimizer"]["lr"] == chosen["best"][
      "imgnet.optimizer.lr"]                        # the final run uses the chosen rate
  assert results["dataset"]["query"] == 16 and results["dataset"]["train"] == 40
  # The command line runs the same grid points as select() on the same config.
  api_workdir, api = selected[3], selected[4]
  for i in range(2):
    cli_point = json.loads((tmp_path / "selection" / f"point{i}" / "results.json").read_text())
    api_point = json.loads((api_workdir / f"point{i}" / "results.json").read_text())
    assert cli_point["config"] == api_point["config"]
  assert chosen["rows"] == json.loads(json.dumps(api.rows))


def test_cli_misspelt_select_field_fails_before_training(tmp_path):
  done = subprocess.run(_cli(tmp_path, "imgnet.optimizer.lrr=1e-3,1e-2"), env=_env(),
                        capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  assert "imgnet.optimizer.lrr" in done.stderr and "no field 'lrr'" in done.stderr
  assert not (tmp_path / "selection").exists() and not (tmp_path / "results.json").exists()


# ---------------------------------------------------------------------------------------
# Shallow baselines


def _separable(seed=0, n=120, c=4, d=8):
  """Four Gaussian classes in ``d`` dimensions: train / query / database."""
  rng = np.random.default_rng(seed)
  centres = 4.0 * rng.standard_normal((c, d))

  def split(m, first_id):
    y = rng.integers(0, c, m)
    x = (centres[y] + rng.standard_normal((m, d))).astype(np.float32)
    return Split(x, np.eye(c)[y], np.arange(first_id, first_id + m))
  return RetrievalData("toy", split(n, 0), split(20, 1000), split(80, 2000),
                       [str(i) for i in range(c)])


def test_select_shallow_scores_each_point_on_the_validation_split_only():
  from dseh_jax import baselines  # pylint: disable=import-outside-toplevel
  data = _separable()
  # Queries and database that would break any fit or score: the selection never reads them.
  poisoned = RetrievalData("toy", data.train, Split(np.full_like(data.query.inputs, np.nan),
                                                    data.query.labels, data.query.ids),
                           data.database, data.class_names)
  grid = {"num_anchors": [8, 32], "num_labelled": [60]}
  got = selection.select_shallow("ksh", poisoned, grid, bits=8, seed=3)
  val = selection.validation_data(data, fraction=0.2, seed=3)
  scores = []
  for point in selection.grid_points(grid):
    metrics, _ = baselines.fit_and_evaluate("ksh", val, 8, 3, **point)
    scores.append(metrics["map_tie_aware"])
  assert [r["score"] for r in got.rows] == pytest.approx(scores, abs=1e-12)
  assert got.best == selection.grid_points(grid)[int(np.argmax(scores))]
  assert [r["point"] for r in got.rows] == selection.grid_points(grid)
  with pytest.raises(ValueError, match="empty"):
    selection.select_shallow("ksh", data, {}, bits=8, seed=0)
