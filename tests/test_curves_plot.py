"""The paper's figures: PNGs written atomically, JSON/CSV equal to the plotted inputs, PCA
against an independent eigen-decomposition, and the plot_curves command."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from dseh_jax.evaluation import evaluate_retrieval
from dseh_jax.evaluation.curves_plot import (pca_2d, plot_pr_curves, plot_precision_at_n,
                                             plot_semantic_pca)
from scripts import load_script

PNG = b"\x89PNG\r\n\x1a\n"


def _pr(rng, k):
  recall = np.sort(rng.random(k + 1))
  precision = np.sort(rng.random(k + 1))[::-1]
  return {"radius": list(range(k + 1)), "precision": precision.tolist(),
          "recall": recall.tolist()}


def _assert_png(path):
  data = open(path, "rb").read()
  assert data[:8] == PNG and len(data) > 10_000


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.reader(f))


def test_pr_curves_png_json_csv(tmp_path):
  rng = np.random.default_rng(0)
  curves = {"DSEH": _pr(rng, 8), "HashNet": _pr(rng, 8)}
  path = str(tmp_path / "figs" / "pr_nus_8bits.png")
  plot_pr_curves(curves, path, title="PR @ 8 bits")
  _assert_png(path)
  assert sorted(os.listdir(tmp_path / "figs")) == ["pr_nus_8bits.csv", "pr_nus_8bits.json",
                                                  "pr_nus_8bits.png"]
  saved = json.load(open(tmp_path / "figs" / "pr_nus_8bits.json"))
  assert saved["methods"] == curves and list(saved["methods"]) == ["DSEH", "HashNet"]
  rows = _read_csv(tmp_path / "figs" / "pr_nus_8bits.csv")
  assert rows[0] == ["method", "radius", "recall", "precision"] and len(rows) == 1 + 2 * 9
  for method, radius, recall, precision in rows[1:]:
    c = curves[method]
    assert float(recall) == c["recall"][int(radius)]          # exact: floats written by repr
    assert float(precision) == c["precision"][int(radius)]


def _report(seed=0, k=8):
  rng = np.random.default_rng(seed)
  q, db = np.where(rng.random((15, k)) < .5, -1, 1), np.where(rng.random((90, k)) < .5, -1, 1)
  lq = np.eye(3)[rng.integers(0, 3, 15)]
  ldb = np.eye(3)[rng.integers(0, 3, 90)]
  return evaluate_retrieval(q, db, lq, ldb, precision_at_n=(1, 5, 10, 50),
                            ties=("stable", "tie_aware"))


def test_plots_take_retrieval_reports_and_their_dicts(tmp_path):
  a, b = _report(0), _report(1)
  plot_pr_curves({"a": a, "b": b.to_dict()}, str(tmp_path / "pr.png"))
  saved = json.load(open(tmp_path / "pr.json"))["methods"]
  assert saved["a"] == {k: list(v) for k, v in a.pr_curve.items()}
  assert saved["b"]["precision"] == b.pr_curve["precision"]
  plot_precision_at_n({"a": a, "b": b.to_dict()}, str(tmp_path / "pn.png"),
                      policy="tie_aware")
  _assert_png(tmp_path / "pn.png")
  saved = json.load(open(tmp_path / "pn.json"))
  assert saved["tie_policy"] == "tie_aware"
  assert saved["methods"]["a"] == {"n": [1, 5, 10, 50],
                                   "precision": a.precision_at["tie_aware"]}
  rows = _read_csv(tmp_path / "pn.csv")
  assert rows[0] == ["method", "n", "precision"]
  got = {(m, int(n)): float(p) for m, n, p in rows[1:]}
  for j, n in enumerate([1, 5, 10, 50]):
    assert got[("b", n)] == b.precision_at["tie_aware"][j]


@pytest.mark.parametrize("curves, match", [
    ({}, "empty"),
    ({"m": {"radius": [0, 1], "precision": [0.5, 1.5], "recall": [0.1, 0.2]}},
     r"curves of 'm'.*pr_curve.precision.*\[0, 1\]"),
    ({"m": {"radius": [0, 1, 2], "precision": [0.5, 0.4], "recall": [0.1, 0.2]}},
     r"curves of 'm'.*3 radii, 2 precisions"),
    ({"m": {"precision": [0.5]}}, r"lacks \['recall'\]"),
])
def test_pr_plot_rejects_bad_curves(tmp_path, curves, match):
  with pytest.raises(ValueError, match=match):
    plot_pr_curves(curves, str(tmp_path / "x.png"))
  assert list(tmp_path.iterdir()) == []


def test_precision_at_n_names_a_missing_policy(tmp_path):
  with pytest.raises(ValueError, match=r"no tie policy 'random'.*\['stable'\]"):
    plot_precision_at_n({"m": {"precision_at_n": [1, 2], "precision_at": {"stable": [1, .5]}}},
                        str(tmp_path / "x.png"), policy="random")


def _reference_pca(x):
  """Independent PCA: eigen-decomposition of the covariance matrix (float64)."""
  centered = x - x.mean(0)
  vals, vecs = np.linalg.eigh(centered.T @ centered)
  order = np.argsort(vals)[::-1]
  return centered @ vecs[:, order[:2]], vals[order[:2]] / vals.sum()


def test_pca_matches_an_eigen_decomposition():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(60, 10)) @ np.diag(np.linspace(3, 0.1, 10))
  coords, ratio = pca_2d(x)
  ref, ref_ratio = _reference_pca(x)
  np.testing.assert_allclose(ratio, ref_ratio, rtol=1e-10)
  for j in range(2):                     # a component's sign is a convention
    sign = np.sign(coords[:, j] @ ref[:, j])
    np.testing.assert_allclose(coords[:, j], sign * ref[:, j], atol=1e-10)


def test_semantic_pca_plot_fits_both_sets_together(tmp_path):
  rng = np.random.default_rng(4)
  lab = rng.normal(size=(100, 32)) + 2.0
  img = rng.normal(size=(100, 32))
  labels = (rng.random((100, 5)) < 0.3).astype(np.float32)
  path = str(tmp_path / "pca.png")
  plot_semantic_pca(lab, img, path, labels=labels, title="Fig. 5")
  _assert_png(path)
  saved = json.load(open(tmp_path / "pca.json"))
  ref, ref_ratio = _reference_pca(np.concatenate([lab, img]))
  coords = np.concatenate([saved["labnet"], saved["imgnet"]])
  np.testing.assert_allclose(saved["explained_variance_ratio"], ref_ratio, rtol=1e-10)
  for j in range(2):
    np.testing.assert_allclose(np.abs(coords[:, j]), np.abs(ref[:, j]), atol=1e-9)
  rows = _read_csv(tmp_path / "pca.csv")
  assert rows[0] == ["network", "index", "label", "pc1", "pc2"] and len(rows) == 201
  first = [int(np.flatnonzero(r)[0]) if r.any() else -1 for r in labels]
  assert [int(r[2]) for r in rows[1:101]] == first
  with pytest.raises(ValueError, match="same width"):
    plot_semantic_pca(lab, img[:, :5], path)


# --------------------------------------------------------------------------- command

def _script():
  return load_script("plot_curves")


def test_plot_curves_command_reads_runs(tmp_path, capsys):
  cli = _script()
  runs = []
  for i, name in enumerate(["dseh_run", "other_run"]):
    run = tmp_path / name
    (run / "bits8").mkdir(parents=True)
    (run / "bits8" / "curves.json").write_text(json.dumps(_report(i).to_dict()))
    (run / "results.json").write_text(json.dumps({"dataset": {"name": "nus wide21"}}))
    runs.append(str(run))
  out = tmp_path / "figs"
  assert cli.main(["--runs", *runs, "--names", "DSEH", "other", "--bits", "8",
                   "--out", str(out)]) == 0
  _assert_png(out / "pr_nus_wide21_8bits.png")
  _assert_png(out / "precision_at_n_nus_wide21_8bits.png")
  saved = json.load(open(out / "pr_nus_wide21_8bits.json"))
  assert list(saved["methods"]) == ["DSEH", "other"]
  assert saved["methods"]["other"]["recall"] == _report(1).pr_curve["recall"]
  assert "nus wide21 @ 8 bits" in saved["title"]
  assert cli.main(["--runs", *runs, "--bits", "16", "--out", str(out)]) == 2
  assert "bits16/curves.json: no such curves file" in capsys.readouterr().err
  assert cli.main(["--runs", runs[0], "--names", "a", "b", "--bits", "8",
                   "--out", str(out)]) == 2
