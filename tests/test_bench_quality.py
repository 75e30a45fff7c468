"""experiments/bench_quality.py: configs per development set, shallow cells, the tables."""
import csv

import numpy as np
import pytest

from dseh_jax import evaluation
from dseh_jax.data.splits import RetrievalData, Split
from scripts import load_script


@pytest.fixture(scope="module")
def bench():
  return load_script("bench_quality")


def test_feature_sets_use_nuswide21_in_feature_mode_and_image_sets_cifar10(bench):
  args = bench.parse_args(["--out", "x", "--bits", "16", "--set", "imgnet.optimizer.lr=3e-4"])
  c = bench.dseh_config("usps_pixels", "dseh", args)
  assert c.imgnet.backbone == "none" and c.data.name == "nus_wide21"
  assert c.bits == (16,) and c.on_collapse == "warn" and c.imgnet.optimizer.lr == 3e-4
  assert c.data.standardize == "zscore" and c.imgnet.optimizer.name == "adam"
  paper = bench.dseh_config("usps_pixels", "dseh_paper", args)
  assert paper.imgnet.optimizer.name == "sgd" and paper.labnet.loss.reduction == "paper"
  code = bench.dseh_config("usps_pixels", "dseh_code", args)
  assert code.labnet.lrn and code.imgnet.optimizer.clip == 1.0
  img = bench.dseh_config("cifar10_images", "dseh", args)
  assert img.imgnet.backbone == "mini_cnnf" and img.data.name == "cifar10"


def toy_data(seed=0):
  """Two well separated classes in 6-d, 40 train / 10 query / 60 database points."""
  rng = np.random.default_rng(seed)
  def split(n, offset):
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 6)) + 4.0 * y[:, None]
    return Split(x.astype(np.float32), np.eye(2, dtype=np.float32)[y],
                 np.arange(offset, offset + n))
  return RetrievalData("toy", split(40, 0), split(10, 100), split(60, 200), ("a", "b"))


@pytest.mark.parametrize("method", ["lsh", "itq"])
def test_shallow_cell_equals_an_independent_evaluation(bench, method):
  from dseh_jax import baselines
  data = toy_data()
  args = bench.parse_args(["--out", "x", "--bits", "4"])
  cell = bench.run_shallow(data, method, args)
  enc = baselines.fit(method, data.train.inputs, data.train.labels, 4, 0)
  q, db = enc.encode(data.query.inputs), enc.encode(data.database.inputs)
  assert cell["map"] == pytest.approx(evaluation.mean_average_precision(
      q, db, data.query.labels, data.database.labels))
  assert cell["nh"] == len(np.unique(db, axis=0))
  assert cell["map"] > 0.9                      # separable: both methods find the classes


def test_tables_hold_every_cell(bench, tmp_path):
  rows = [{"label": "dseh", "method": "dseh", "set": "a", "bits": 32, "seed": 0, "map": 0.5,
           "map_tie_aware": 0.49, "nh": 10, "collapsed": False, "seconds": 1.0},
          {"label": "itq", "method": "itq", "set": "a", "bits": 32, "seed": 0, "map": 0.25,
           "map_tie_aware": 0.24, "nh": 900, "seconds": 0.1},
          {"label": "dseh", "method": "dseh", "set": "b", "bits": 32, "seed": 0, "map": 0.1,
           "map_tie_aware": 0.09, "nh": 1, "collapsed": True, "seconds": 1.0}]
  bench.write_tables(rows, str(tmp_path))
  md = (tmp_path / "quality.md").read_text()
  assert "| dseh | 0.500 / 0.490, nh 10 | 0.100 / 0.090, nh 1 (collapsed) |" in md
  assert "| itq | 0.250 / 0.240, nh 900 |  |" in md
  with open(tmp_path / "quality.csv") as f:
    table = list(csv.DictReader(f))
  assert [(r["label"], r["set"], float(r["map"])) for r in table] == [
      ("dseh", "a", 0.5), ("itq", "a", 0.25), ("dseh", "b", 0.1)]


def test_unknown_set_or_method_is_refused(bench, tmp_path):
  with pytest.raises(SystemExit, match="unknown development set"):
    bench.load_set("mnist", bench.parse_args(["--out", str(tmp_path)]))
  with pytest.raises(SystemExit, match="unknown method"):
    bench.main(["--out", str(tmp_path), "--methods", "dseh,dpsh,nope"])


def test_every_shallow_method_of_the_bench_is_a_baseline(bench):
  from dseh_jax import baselines  # pylint: disable=import-outside-toplevel
  assert set(bench.SHALLOW) == set(baselines.FITTERS)
