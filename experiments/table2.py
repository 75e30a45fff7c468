"""Table 2 of the paper (SPEC §7): DSEH's ablations at one code length, over seeds.

    python experiments/table2.py --config digits --seeds 0,1,2 --out runs/table2_digits

Each variant of ``dseh_jax.configs.variants`` (``full``, ``S``, ``SS``, ``L``, ``A``) trains
with the config's defaults (one workdir per variant and seed under ``OUT/runs``). Reports
``nh`` (distinct LabNet codes over the training set), ``map_l`` (LabNet's label → code
retrieval) and ``map_i`` (ImgNet's MAP, stable / tie-aware), mean ± std over the seeds, with
the paper's numbers beside ours on its datasets. ``OUT/rows.json`` keeps finished cells
(a rerun resumes); ``OUT/table2.csv`` and ``OUT/table2.md`` hold the table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("full", "S", "SS", "L", "A")
# SPEC §7, Table 2 at 32 bits: (nh, map_l, map_i).
PAPER = {
    "nuswide21": {"full": (2008, .9664, .7312), "S": (1959, .9633, .7208),
                  "SS": (1164, .9322, .7013), "L": (1036, .9607, .7251),
                  "A": (1684, .9558, .7234)},
    "imagenet100": {"full": (100, 1.0, .6137), "S": (100, 1.0, .5988),
                    "SS": (98, .9825, .5681), "L": (100, 1.0, .6070), "A": (100, 1.0, .5576)},
    "coco": {"full": (1907, .8276, .6048), "S": (1933, .8260, .5907),
             "SS": (1220, .7452, .5237), "L": (802, .8199, .5915), "A": (1574, .8134, .5850)},
}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="digits")
  p.add_argument("--data_dir", default="")
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--bits", type=int, default=32)
  p.add_argument("--seeds", default="0")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--out", required=True)
  return p.parse_args(argv)


def run_variant(args, variant: str, seed: int) -> dict:
  # pylint: disable=import-outside-toplevel
  from dseh_jax.configs.variants import apply_variant
  from dseh_jax.data.registry import load_dataset
  from dseh_jax.experiment import prepare, train_and_evaluate
  sys.path.insert(0, HERE)
  from table1 import deep_config
  config = apply_variant(deep_config(args, "dseh", seed, [args.bits]), variant)
  data = prepare(config, load_dataset(config.data, seed=seed), progress=False)
  r = train_and_evaluate(config, data, os.path.join(args.out, "runs", f"{variant}_s{seed}"),
                         progress=False)["bits"][str(args.bits)]
  return {"nh": r["nh"], "map_l": r["map_l"], "map_i": r["map"],
          "map_i_tie_aware": r["map_tie_aware"], "collapsed": r.get("collapsed", False)}


def summarize(rows: list[dict], config: str) -> tuple[list[str], list[dict]]:
  import numpy as np  # pylint: disable=import-outside-toplevel
  paper = PAPER.get(config, {})
  lines = ["| variant | nh | map_l | map_i (stable / tie-aware) | paper nh / map_l / map_i |",
           "|---|---|---|---|---|"]
  records = []
  for v in dict.fromkeys(r["variant"] for r in rows):
    cell = [r for r in rows if r["variant"] == v]
    stat = {k: (float(np.mean([r[k] for r in cell])), float(np.std([r[k] for r in cell])))
            for k in ("nh", "map_l", "map_i", "map_i_tie_aware")}
    ref = paper.get(v)
    lines.append(f"| {v} | {stat['nh'][0]:.1f} ± {stat['nh'][1]:.1f} | "
                 f"{stat['map_l'][0]:.4f} ± {stat['map_l'][1]:.4f} | "
                 f"{stat['map_i'][0]:.4f} ± {stat['map_i'][1]:.4f} / "
                 f"{stat['map_i_tie_aware'][0]:.4f} ± {stat['map_i_tie_aware'][1]:.4f} | "
                 + (" / ".join(str(x) for x in ref) if ref else "") + " |")
    records.append({"variant": v, "seeds": len(cell),
                    **{f"{k}_{s}": stat[k][i] for k in stat for i, s in enumerate(("mean", "std"))},
                    "paper": json.dumps(ref) if ref else ""})
  return lines, records


def main(argv=None) -> int:
  import csv  # pylint: disable=import-outside-toplevel
  args = parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
  sys.path.insert(0, HERE)
  from table1 import _ints  # pylint: disable=import-outside-toplevel
  variants = args.variants.split(",")
  if any(v not in VARIANTS for v in variants):
    raise SystemExit(f"--variants {args.variants!r}: expected some of {VARIANTS}")
  os.makedirs(args.out, exist_ok=True)
  rows_path = os.path.join(args.out, "rows.json")
  rows = json.load(open(rows_path, encoding="utf-8")) if os.path.exists(rows_path) else []
  for seed in _ints(args.seeds, "--seeds"):
    for v in variants:
      if any((r["variant"], r["seed"]) == (v, seed) for r in rows):
        continue
      rows.append({"variant": v, "seed": seed, **run_variant(args, v, seed)})
      print(f"{v:>4} seed {seed}: nh {rows[-1]['nh']}, map_l {rows[-1]['map_l']:.4f}, "
            f"map_i {rows[-1]['map_i']:.4f}", flush=True)
      with open(rows_path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
  lines, records = summarize(rows, args.config)
  with open(os.path.join(args.out, "table2.md"), "w", encoding="utf-8") as f:
    f.write(f"Table 2 on {args.config}, {args.bits} bits, mean ± std over seeds\n\n"
            + "\n".join(lines) + "\n")
  with open(os.path.join(args.out, "table2.csv"), "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, list(records[0]))
    writer.writeheader()
    writer.writerows(records)
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
