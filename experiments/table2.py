"""Table 2 of the paper (SPEC §7): DSEH's ablations at one code length, over seeds.

    python experiments/table2.py --config digits --seeds 0,1,2 --out runs/table2_digits
    python experiments/table2.py --config nuswide21 \\
        --config.data.kwargs.data_dir=/data/NUS-WIDE --out runs/table2_nus

``--config`` and its ``--config.FIELD=VALUE`` overrides are train_dseh.py's. Each variant of ``dseh_jax.configs.variants`` (``full``, ``S``, ``SS``, ``L``, ``A``) trains
with the config's defaults (one workdir per variant and seed under ``OUT/runs``). Reports
``nh`` (distinct LabNet codes over the training set), ``map_l`` (LabNet's label → code
retrieval) and ``map_i`` (ImgNet's MAP, stable / tie-aware), mean ± std over the seeds, with
the paper's numbers beside ours on its datasets. ``OUT/rows.json`` keeps finished cells
(a rerun resumes); ``OUT/table2.csv`` and ``OUT/table2.md`` hold the table.
"""
from __future__ import annotations

import json
import logging
import os
import sys

VARIANTS = ("full", "S", "SS", "L", "A")
# SPEC §7, Table 2 at 32 bits: (nh, map_l, map_i).
PAPER = {
    "nus_wide21": {"full": (2008, .9664, .7312), "S": (1959, .9633, .7208),
                  "SS": (1164, .9322, .7013), "L": (1036, .9607, .7251),
                  "A": (1684, .9558, .7234)},
    "imagenet100": {"full": (100, 1.0, .6137), "S": (100, 1.0, .5988),
                    "SS": (98, .9825, .5681), "L": (100, 1.0, .6070), "A": (100, 1.0, .5576)},
    "coco": {"full": (1907, .8276, .6048), "S": (1933, .8260, .5907),
             "SS": (1220, .7452, .5237), "L": (802, .8199, .5915), "A": (1574, .8134, .5850)},
}


def define_flags(values) -> None:
  """This script's flags besides ``--config``."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_list("variants", list(VARIANTS), "DSEH's ablations to run", flag_values=values)
  flags.DEFINE_integer("bits", 32, "code length", flag_values=values)
  flags.DEFINE_list("seeds", ["0"], "training seeds", flag_values=values)
  flags.DEFINE_string("out", None, "output folder", flag_values=values)
  flags.mark_flag_as_required("out", flag_values=values)


def parse_args(argv=None):
  from dseh_jax import command_line  # pylint: disable=import-outside-toplevel
  return command_line.parse(argv, define_flags, description=__doc__.splitlines()[0])


def run_variant(args, variant: str, seed: int) -> dict:
  # pylint: disable=import-outside-toplevel
  from dseh_jax import methods
  from dseh_jax.configs.variants import apply_variant
  from dseh_jax.data.registry import load_dataset
  from dseh_jax.experiment import prepare, train_and_evaluate
  config = methods.configure(args.config.copy_and_resolve_references(), "dseh")
  config.bits, config.seed, config.on_collapse = (args.bits,), seed, "warn"
  config = apply_variant(config, variant)
  data = prepare(config, load_dataset(config.data, seed=seed), progress=False)
  r = train_and_evaluate(config, data, os.path.join(args.out, "runs", f"{variant}_s{seed}"),
                         progress=False)["bits"][str(args.bits)]
  return {"nh": r["nh"], "map_l": r["map_l"], "map_i": r["map"],
          "map_i_tie_aware": r["map_tie_aware"], "collapsed": r.get("collapsed", False)}


def summarize(rows: list[dict], dataset: str) -> tuple[list[str], list[dict]]:
  """Markdown lines and CSV records (``dataset``: ``config.data.name``, for the paper's
  numbers)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  paper = PAPER.get(dataset, {})
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
  variants, dataset = list(args.variants), args.config.data.name
  if any(v not in VARIANTS for v in variants):
    raise SystemExit(f"--variants {','.join(variants)!r}: expected some of {VARIANTS}")
  try:
    seeds = [int(s) for s in args.seeds]
  except ValueError:
    raise SystemExit(f"--seeds {','.join(args.seeds)!r}: expected integers") from None
  os.makedirs(args.out, exist_ok=True)
  rows_path = os.path.join(args.out, "rows.json")
  rows = json.load(open(rows_path, encoding="utf-8")) if os.path.exists(rows_path) else []
  for seed in seeds:
    for v in variants:
      if any((r["variant"], r["seed"]) == (v, seed) for r in rows):
        continue
      rows.append({"variant": v, "seed": seed, **run_variant(args, v, seed)})
      print(f"{v:>4} seed {seed}: nh {rows[-1]['nh']}, map_l {rows[-1]['map_l']:.4f}, "
            f"map_i {rows[-1]['map_i']:.4f}", flush=True)
      with open(rows_path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
  lines, records = summarize(rows, dataset)
  with open(os.path.join(args.out, "table2.md"), "w", encoding="utf-8") as f:
    f.write(f"Table 2 on {dataset}, {args.bits} bits, mean ± std over seeds\n\n"
            + "\n".join(lines) + "\n")
  with open(os.path.join(args.out, "table2.csv"), "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, list(records[0]))
    writer.writeheader()
    writer.writerows(records)
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
