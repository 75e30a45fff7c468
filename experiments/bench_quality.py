"""Retrieval quality on real development data: DSEH (recipe, paper, code) and shallow baselines.

    python experiments/bench_quality.py --cifar_dir ~/data/cifar10 --usps_mat ~/data/USPS.mat \\
        --out runs/quality --bits 32

Development sets (nothing is downloaded; point the flags at local copies):

* ``cifar10_pixels``: CIFAR-10 by the standard protocol (1,000 / 5,000 / 59,000), raw pixels
  / 255 as 3,072-d feature vectors (feature mode);
* ``usps_pixels``: USPS, 100 queries and 500 training points per class, 256-d pixels / 255;
* ``cifar10_mosaic_pixels``: multi-label 2×2 mosaics of CIFAR-10 photos, 3,072-d pixels;
* ``cifar10_images`` and ``cifar10_mosaic_images`` (``--image_mode``): the same as 32×32
  images, ImgNet with the from-scratch ``mini_cnnf`` backbone (config ``cifar10``).

Feature sets run the ``nuswide21`` config with the data swapped in and
``imgnet.backbone=none``, as a new user would; image sets run the ``cifar10`` config. The shallow
baselines (``--methods``: LSH and ITQ by default; also SH, ITQ-CCA, KSH, SDH) are fitted on
the same inputs as loaded (pixels / 255). Every finished cell is kept in
``OUT/rows.json``, so an interrupted benchmark resumes; the table goes to ``OUT/quality.md``
and ``OUT/quality.csv`` (MAP over the whole ranking, stable / tie-aware, and ``nh``: distinct
LabNet codes for DSEH, distinct database codes for the baselines).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time

SHALLOW = ("lsh", "sh", "itq", "itq_cca", "ksh", "sdh")     # dseh_jax.baselines.FITTERS
DEEP = ("dpsh", "dhn", "hashnet", "cnnh", "csq", "dpn", "orthohash", "greedyhash", "dsdh",
        "dsh")                                                # dseh_jax.methods but DSEH
METHODS = ("dseh", "dseh_paper", "dseh_code") + DEEP + SHALLOW
DEFAULT_METHODS = ("dseh", "dseh_paper", "dseh_code", "lsh", "itq")
FEATURE_SETS = ("cifar10_pixels", "usps_pixels", "cifar10_mosaic_pixels")
IMAGE_SETS = ("cifar10_images", "cifar10_mosaic_images")
CHOICES = {"dseh": "recipe", "dseh_paper": "paper", "dseh_code": "code",
           **{m: "recipe" for m in DEEP}}     # the recipe's networks and optimisers


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cifar_dir", default="", help="CIFAR-10 python batches or class folders")
  p.add_argument("--usps_mat", default="", help="USPS.mat (fea, gnd)")
  p.add_argument("--out", required=True)
  p.add_argument("--bits", type=int, default=32)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--sets", default=",".join(FEATURE_SETS))
  p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                 help=f"some of {','.join(METHODS)}")
  p.add_argument("--image_mode", action="store_true", help="also the image sets")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override for every deep run (ablations), as "
                      "--config.KEY=VALUE is in train_dseh.py")
  p.add_argument("--tag", default="", help="label of this configuration in the table")
  return p.parse_args(argv)


def load_set(name: str, args):
  """The development set ``name`` as ``RetrievalData`` (inputs as loaded, not standardised)."""
  from dseh_jax.data.cifar10 import build_cifar10  # pylint: disable=import-outside-toplevel
  from dseh_jax.data.cifar10_mosaic import build_cifar10_mosaic  # pylint: disable=import-outside-toplevel
  from dseh_jax.data.usps import build_usps  # pylint: disable=import-outside-toplevel
  flatten = name.endswith("_pixels")
  if name.startswith("cifar10_mosaic"):
    builder, source = build_cifar10_mosaic, args.cifar_dir
  elif name.startswith("cifar10"):
    builder, source = build_cifar10, args.cifar_dir
  elif name == "usps_pixels":
    return build_usps(args.usps_mat, seed=args.seed)
  else:
    raise SystemExit(f"--sets: unknown development set {name!r}; expected some of "
                     f"{FEATURE_SETS + IMAGE_SETS}")
  if not source:
    raise SystemExit(f"--sets {name} needs --cifar_dir")
  return builder(source, seed=args.seed, flatten=flatten)


def dseh_config(set_name: str, method: str, args):
  from dseh_jax import configs, methods  # pylint: disable=import-outside-toplevel
  from dseh_jax.command_line import apply_overrides  # pylint: disable=import-outside-toplevel
  image = not set_name.endswith("_pixels")
  c = configs.get_config("cifar10" if image else "nuswide21", CHOICES[method])
  if not image:
    c.imgnet.backbone = "none"
  methods.configure(c, method if method in DEEP else "dseh")
  c.bits = (args.bits,)
  c.seed = args.seed
  c.on_collapse = "warn"                 # a collapsed run is reported, not stopped
  c.eval.top_k = 0
  c.eval.labnet_map_every = 0
  apply_overrides(c, args.set)
  return c


def run_dseh(data, set_name: str, method: str, args, workdir: str) -> dict:
  from dseh_jax.data.standardize import standardize  # pylint: disable=import-outside-toplevel
  from dseh_jax.experiment import train_and_evaluate  # pylint: disable=import-outside-toplevel
  config = dseh_config(set_name, method, args)
  data = standardize(data, config.data.standardize)
  r = train_and_evaluate(config, data, workdir, progress=False)["bits"][str(args.bits)]
  with open(os.path.join(workdir, f"bits{args.bits}", "history.json")) as f:
    history = json.load(f)
  last_img = [h for h in history if h["kind"] == "imgnet_round"][-1]   # every method
  collapsed = any(h.get("collapsed") for h in history if h["kind"].endswith("_round"))
  return {"map": r["map"], "map_tie_aware": r["map_tie_aware"], "nh": r.get("nh"),
          "map_l": r.get("map_l"), "bit_agreement": last_img.get("bit_agreement"),
          "collapsed": collapsed}


def run_shallow(data, method: str, args) -> dict:
  from dseh_jax import baselines  # pylint: disable=import-outside-toplevel
  return baselines.fit_and_evaluate(method, data, args.bits, args.seed)[0]


def write_tables(rows: list[dict], out: str) -> None:
  sets = list(dict.fromkeys(r["set"] for r in rows))
  labels = list(dict.fromkeys(r["label"] for r in rows))
  cell = {(r["label"], r["set"]): r for r in rows}
  lines = ["| method | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
  for label in labels:
    cells = []
    for s in sets:
      r = cell.get((label, s))
      cells.append("" if r is None else f"{r['map']:.3f} / {r['map_tie_aware']:.3f}, "
                   f"nh {r['nh']}" + (" (collapsed)" if r.get("collapsed") else ""))
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  with open(os.path.join(out, "quality.md"), "w") as f:
    f.write("MAP@all stable / tie-aware, nh\n\n" + "\n".join(lines) + "\n")
  keys = ["label", "method", "set", "bits", "seed", "map", "map_tie_aware", "nh", "map_l",
          "bit_agreement", "collapsed", "seconds"]
  with open(os.path.join(out, "quality.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  print("\n".join(lines))


def main(argv=None) -> int:
  args = parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
  os.makedirs(args.out, exist_ok=True)
  rows_path = os.path.join(args.out, "rows.json")
  rows = json.load(open(rows_path)) if os.path.exists(rows_path) else []
  sets = args.sets.split(",") + (list(IMAGE_SETS) if args.image_mode else [])
  methods = args.methods.split(",")
  for m in methods:
    if m not in METHODS:
      raise SystemExit(f"--methods: unknown method {m!r}; expected some of {METHODS}")
  for set_name in sets:
    data = None
    for method in methods:
      label = method + (f" {args.tag}" if args.tag and method in CHOICES else "")
      key = (label, set_name, args.bits, args.seed)
      if any((r["label"], r["set"], r["bits"], r["seed"]) == key for r in rows):
        continue
      data = data or load_set(set_name, args)
      t0 = time.time()
      workdir = os.path.join(args.out, "runs", f"{set_name}_{label.replace(' ', '_')}"
                             f"_b{args.bits}_s{args.seed}")
      result = (run_dseh(data, set_name, method, args, workdir) if method in CHOICES
                else run_shallow(data, method, args))
      rows.append({"label": label, "method": method, "set": set_name, "bits": args.bits,
                   "seed": args.seed, **result, "seconds": round(time.time() - t0, 1)})
      print(f"{label:>18} {set_name:>24}: MAP {result['map']:.4f} / tie-aware "
            f"{result['map_tie_aware']:.4f}, nh {result['nh']} ({time.time() - t0:.0f} s)",
            flush=True)
      with open(rows_path, "w") as f:
        json.dump(rows, f, indent=1)
  write_tables(rows, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
