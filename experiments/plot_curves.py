"""Draw the paper's curve figures (SPEC §7, Figs. 3–4; Fig. 5 with --semantic) from runs.

    python experiments/plot_curves.py --runs runs/nus runs/nus_hashnet --names DSEH HashNet \\
        --bits 32 --out figs/

Each run is a folder holding ``bits{K}/curves.json`` (written by the trainer: ``pr_curve``,
``precision_at_n`` and ``precision_at`` as in ``RetrievalReport.to_dict()``), or such a JSON
file itself. Writes ``OUT/pr_<dataset>_<K>bits.png`` and
``OUT/precision_at_n_<dataset>_<K>bits.png``, each with ``.json`` and ``.csv`` of the
plotted numbers. ``--semantic FILE.npz`` (fields ``labnet_features``,
``imgnet_features`` and optionally ``labels``) also draws ``semantic_pca_<dataset>_<K>bits.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--runs", nargs="+", required=True,
                 help="run folders (with bits{K}/curves.json) or curves JSON files")
  p.add_argument("--names", nargs="+", default=None,
                 help="legend names, one per run (default: the folder names)")
  p.add_argument("--bits", type=int, required=True)
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--policy", default="stable", help="tie policy of the P@N curve")
  p.add_argument("--dataset", default="", help="dataset name for titles and file names "
                 "(default: from the first run's results.json)")
  p.add_argument("--semantic", default="",
                 help=".npz with labnet_features, imgnet_features[, labels] for Fig. 5")
  return p.parse_args(argv)


def curves_path(run: str, bits: int) -> str:
  return run if run.endswith(".json") else os.path.join(run, f"bits{bits}", "curves.json")


def read_curves(path: str) -> dict[str, Any]:
  """A run's curves JSON; ``ValueError`` naming the file when missing or malformed."""
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such curves file (the trainer writes bits{{K}}/curves.json)")
  try:
    with open(path) as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a JSON object with 'pr_curve', 'precision_at_n' "
                     "and 'precision_at'")
  return data


def dataset_name(runs: list[str], given: str) -> str:
  if given:
    return given
  for run in runs:
    path = os.path.join(run, "results.json")
    if not run.endswith(".json") and os.path.exists(path):
      with open(path) as f:
        return str(json.load(f).get("dataset", {}).get("name", ""))
  return ""


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def run(args) -> list[str]:
  """Draws the figures; returns the PNG paths written."""
  # pylint: disable=import-outside-toplevel
  import numpy as np
  from dseh_jax.evaluation import curves_plot

  names = args.names or [os.path.basename(os.path.normpath(r)) for r in args.runs]
  if len(names) != len(args.runs):
    raise ValueError(f"--names has {len(names)} entries for {len(args.runs)} --runs")
  if len(set(names)) != len(names):
    raise ValueError(f"--names {names} repeats a name; the legend needs distinct names")
  pr, pn = {}, {}
  for name, run_dir in zip(names, args.runs):
    path = curves_path(run_dir, args.bits)
    data = read_curves(path)
    pr[name] = curves_plot.pr_curve_of(data, where=path)
    pn[name] = curves_plot.precision_at_n_of(data, args.policy, where=path)
    if len(pr[name]["radius"]) != args.bits + 1:
      raise ValueError(f"{path}: field 'pr_curve' has {len(pr[name]['radius'])} radii; "
                       f"expected {args.bits + 1} for --bits {args.bits}")
  dataset = dataset_name(args.runs, args.dataset)
  tag = f"{_slug(dataset)}_{args.bits}bits" if dataset else f"{args.bits}bits"
  written = [os.path.join(args.out, f"pr_{tag}.png"),
             os.path.join(args.out, f"precision_at_n_{tag}.png")]
  curves_plot.plot_pr_curves(pr, written[0], curves_plot.nice_title(
      dataset, args.bits, "Precision-recall (Hamming radius 0..K)"))
  curves_plot.plot_precision_at_n(
      {n: {"precision_at_n": c["n"], "precision_at": {args.policy: c["precision"]}}
       for n, c in pn.items()}, written[1],
      curves_plot.nice_title(dataset, args.bits, "Precision@N"), policy=args.policy)
  if args.semantic:
    with np.load(args.semantic, allow_pickle=False) as npz:
      fields = {k: npz[k] for k in npz.files}
    missing = [k for k in ("labnet_features", "imgnet_features") if k not in fields]
    if missing:
      raise ValueError(f"{args.semantic}: missing field(s) {missing}")
    written.append(os.path.join(args.out, f"semantic_pca_{tag}.png"))
    curves_plot.plot_semantic_pca(fields["labnet_features"], fields["imgnet_features"],
                                  written[-1], labels=fields.get("labels"),
                                  title=curves_plot.nice_title(dataset, args.bits,
                                                               "Semantic features, PCA"))
  return written


def main(argv=None) -> int:
  args = parse_args(argv)
  try:
    written = run(args)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for path in written:
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
