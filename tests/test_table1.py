"""experiments/table1.py on tiny digits: every kind of method, two seeds, the tables' numbers
against the rows, the paper's numbers on the paper's datasets, and resuming."""
import csv
import os
import json

import numpy as np
import pytest

from scripts import load_script, tiny_digits_overrides


@pytest.fixture(scope="module")
def table1():
  return load_script("table1")


def _sets():
  return [f"--config.{item}" for item in tiny_digits_overrides("(2,1)", "(2,1)")]


@pytest.mark.slow
def test_table1_runs_deep_and_shallow_methods_over_seeds(tmp_path, table1, capsys):
  out = tmp_path / "t1"
  argv = ["--config", "digits", "--methods", "dseh,cnnh,itq,lsh", "--bits", "8,16",
          "--seeds", "0,1", "--out", str(out)] + _sets()
  assert table1.main(argv) == 0
  rows = json.loads((out / "rows.json").read_text())
  assert {(r["method"], r["bits"], r["seed"]) for r in rows} == {
      (m, b, s) for m in ("dseh", "cnnh", "itq", "lsh") for b in (8, 16) for s in (0, 1)}
  records = list(csv.DictReader(open(out / "table1.csv")))
  assert len(records) == 8
  for rec in records:
    cell = [r for r in rows if r["method"] == rec["method"] and r["bits"] == int(rec["bits"])]
    np.testing.assert_allclose(float(rec["map_mean"]), np.mean([r["map"] for r in cell]))
    np.testing.assert_allclose(float(rec["map_tie_aware_std"]),
                               np.std([r["map_tie_aware"] for r in cell]))
  md = (out / "table1.md").read_text()
  assert "| dseh |" in md and "±" in md and "paper" not in md      # not a paper dataset
  # A rerun finds every cell done and trains nothing.
  capsys.readouterr()
  assert table1.main(argv) == 0
  assert "MAP 0." not in capsys.readouterr().out
  # Figures 3-5: every method's curves on one figure each, from the runs' curves.json.
  figures = load_script("figures")
  assert figures.main(["--table1", str(out), "--bits", "16", "--dataset", "digits",
                       "--out", str(tmp_path / "figs")]) == 0
  pr = json.loads((tmp_path / "figs" / "pr_digits_16bits.json").read_text())
  assert sorted(pr["methods"]) == ["CNNH", "DSEH", "ITQ", "LSH"]
  assert all(len(c["precision"]) == 17 for c in pr["methods"].values())   # radius 0..16
  for name in ("pr_digits_16bits.png", "precision_at_n_digits_16bits.png",
               "semantic_pca_digits_16bits.png"):
    assert (tmp_path / "figs" / name).stat().st_size > 0


def test_table1_puts_the_papers_numbers_beside_ours(table1):
  rows = [{"method": "dseh", "bits": 32, "seed": s, "map": m, "map_tie_aware": m}
          for s, m in ((0, .70), (1, .72))]
  lines, records = table1.summarize(rows, "nus_wide21")
  assert "0.7100 ± 0.0100" in lines[-1] and "(paper 0.7312)" in lines[-1]
  assert records[0]["paper"] == .7312


def test_table1_refuses_unknown_methods(table1, tmp_path):
  with pytest.raises(SystemExit, match="unknown"):
    table1.main(["--methods", "dseh,nope", "--out", str(tmp_path)])


@pytest.mark.slow
def test_table2_runs_the_ablations(tmp_path):
  table2 = load_script("table2")
  out = tmp_path / "t2"
  assert table2.main(["--config", "digits", "--variants", "full,A", "--bits", "8",
                      "--out", str(out)] + _sets()) == 0
  rows = json.loads((out / "rows.json").read_text())
  assert [r["variant"] for r in rows] == ["full", "A"]
  # A = one round: its workdir's history has one LabNet and one ImgNet round.
  history = json.loads((out / "runs" / "A_s0" / "bits8" / "history.json").read_text())
  assert [h["kind"] for h in history if h["kind"].endswith("_round")] == [
      "labnet_round", "imgnet_round"]
  records = list(csv.DictReader(open(out / "table2.csv")))
  assert [r["variant"] for r in records] == ["full", "A"]
  assert float(records[0]["nh_mean"]) == rows[0]["nh"] and float(records[0]["nh_std"]) == 0.0
  lines, _ = table2.summarize([{**rows[0], "variant": "full"}], "nus_wide21")
  assert "2008 / 0.9664 / 0.7312" in lines[-1]


def test_table1_selects_shallow_options_on_a_validation_split(table1, tmp_path):
  out = tmp_path / "t1"
  argv = ["--config", "digits", "--methods", "ksh", "--bits", "8", "--out", str(out),
          "--select_shallow", "ksh.num_anchors=16,64"] + _sets()
  assert table1.main(argv) == 0
  [row] = json.loads((out / "rows.json").read_text())
  chosen = json.loads((out / "runs" / "ksh_s0" / "bits8" / "selection.json").read_text())
  assert row["selected"] == chosen["best"] and chosen["best"]["num_anchors"] in (16, 64)
  assert [r["point"]["num_anchors"] for r in chosen["rows"]] == [16, 64]
  [record] = list(csv.DictReader(open(out / "table1.csv")))
  assert json.loads(record["selected"]) == chosen["best"]


@pytest.mark.parametrize("item,message", [
    ("ksh.anchors=3,4", "ksh takes ["), ("nope.x=1", "METHOD one of"),
    ("lsh.x=1", "lsh takes no options")])
def test_table1_refuses_a_bad_shallow_grid_before_training(table1, tmp_path, item, message):
  with pytest.raises(SystemExit, match=message.replace("[", r"\[")):
    table1.main(["--methods", "dseh,ksh", "--out", str(tmp_path), "--select_shallow", item])
  assert not (tmp_path / "rows.json").exists()


def test_table1_and_bench_quality_know_every_method(table1):
  """The scripts' method lists (spelt out so that ``--help`` stays light) are the registry's."""
  import importlib.util

  from dseh_jax import methods
  assert set(table1.DEEP) == set(methods.NAMES) and len(table1.DEEP) == len(methods.NAMES)
  path = os.path.join(os.path.dirname(table1.__file__), "bench_quality.py")
  spec = importlib.util.spec_from_file_location("bench_quality_names", path)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  assert set(bench.DEEP) | {"dseh"} == set(methods.NAMES)
