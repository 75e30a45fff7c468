"""Figures 3–5 of the paper (SPEC §7) from a Table 1 run (``experiments/table1.py``).

    python experiments/figures.py --table1 runs/table1_digits --bits 32 --out figs/digits

Figure 3 (precision–recall within Hamming radius 0..K) and Figure 4 (precision@N) with
every method of the run at ``--bits`` on one figure each (seed ``--seed``), and Figure 5
(PCA of LabNet's and ImgNet's semantic features of 100 training points) from DSEH's run.
Each PNG has its plotted numbers next to it as JSON and CSV (``experiments/plot_curves.py``).
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--table1", required=True, help="the OUT folder of experiments/table1.py")
  p.add_argument("--bits", type=int, default=32)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dataset", default="", help="dataset name for titles and file names")
  p.add_argument("--out", required=True)
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  sys.path.insert(0, HERE)
  import plot_curves  # pylint: disable=import-outside-toplevel
  from table1 import DEEP, SHALLOW  # pylint: disable=import-outside-toplevel
  labels = {"itq_cca": "ITQ-CCA", "hashnet": "HashNet"}
  runs, names = [], []
  for method in DEEP + SHALLOW:
    run = os.path.join(args.table1, "runs", f"{method}_s{args.seed}")
    if os.path.exists(os.path.join(run, f"bits{args.bits}", "curves.json")):
      runs.append(run)
      names.append(labels.get(method, method.upper()))
  if not runs:
    raise SystemExit(f"--table1 {args.table1}: no run has bits{args.bits}/curves.json for "
                     f"seed {args.seed}")
  semantic = os.path.join(args.table1, "runs", f"dseh_s{args.seed}", f"bits{args.bits}",
                          "semantic.npz")
  argv = ["--runs", *runs, "--names", *names, "--bits", str(args.bits), "--out", args.out]
  argv += ["--dataset", args.dataset] if args.dataset else []
  argv += ["--semantic", semantic] if os.path.exists(semantic) else []
  return plot_curves.main(argv)


if __name__ == "__main__":
  sys.exit(main())
