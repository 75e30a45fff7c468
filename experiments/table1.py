"""Table 1 of the paper (SPEC §7) on one dataset: every method × code length × seed.

    python experiments/table1.py --config digits --out runs/table1_digits
    python experiments/table1.py --config cifar10 \\
        --config.data.kwargs.data_dir=~/data/cifar10 --bits 32 --seeds 0,1,2 \\
        --out runs/table1_cifar10
    python experiments/table1.py --config nuswide21 \\
        --config.data.kwargs.data_dir=/data/NUS-WIDE \\
        --shallow_features runs/fc7_nus.npz --out runs/table1_nus

``--config`` and its ``--config.FIELD=VALUE`` overrides are train_dseh.py's; each method of
``--methods`` replaces the config's method (with its default settings). Deep methods (DSEH and the baselines of ``dseh_jax.methods``) train with the config's
defaults through the shared trainer (one workdir per method and seed under ``OUT/runs``,
every code length in it); shallow methods (``dseh_jax.baselines``) fit on
``--shallow_features`` (a feature file of ``experiments/extract_features.py``, e.g. the
fc7 features of a pretrained CNN-F, SPEC §8) or, without it, on the inputs as vectors
(pixels, for the sets trained from scratch). ``--select KEY=V1,V2`` chooses deep methods'
settings on a validation split carved from the training set (``dseh_jax.selection``; the
chosen values are in the table). Writes ``OUT/rows.json`` (finished cells are kept, so a
rerun resumes), every run's ``bits{K}/curves.json`` under ``OUT/runs/<method>_s<seed>``
(``experiments/figures.py`` draws Figures 3–5 from them), ``OUT/table1.csv`` and
``OUT/table1.md``: MAP over the whole ranking,
mean ± std over the seeds, ties stable and tie-aware, and the paper's number beside ours on
the paper's datasets.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time

PAPER_DEEP = ("dseh", "hashnet", "dhn", "dpsh", "cnnh")        # the paper's Table 1
MODERN = ("csq", "dpn", "orthohash", "greedyhash", "dsdh", "dsh")  # later papers' methods
DEEP = PAPER_DEEP + MODERN                                   # = dseh_jax.methods.NAMES
SHALLOW = ("sdh", "itq_cca", "ksh", "itq", "sh", "lsh")
PAPER_SET = {"nus_wide21": "NUS-WIDE", "imagenet100": "ImageNet", "coco": "MS-COCO"}
PAPER_BITS = (16, 32, 48, 64)
# SPEC §7, Table 1: MAP at 16 / 32 / 48 / 64 bits.
PAPER = {
    "NUS-WIDE": {"dseh": (.7119, .7312, .7372, .7422), "hashnet": (.7007, .7275, .7301, .7374),
                 "dhn": (.6512, .6611, .6675, .6741), "dpsh": (.6902, .7049, .7130, .7158),
                 "cnnh": (.6573, .6601, .6716, .6781), "sdh": (.6488, .6703, .6811, .6857),
                 "itq_cca": (.6125, .6472, .6655, .6766), "ksh": (.6404, .6636, .6689, .6731),
                 "itq": (.5715, .5876, .5910, .5985), "sh": (.4459, .4504, .4342, .4244),
                 "lsh": (.4624, .4431, .4433, .4816)},
    "ImageNet": {"dseh": (.5278, .6137, .6397, .6548), "hashnet": (.3260, .4563, .5018, .5270),
                 "dhn": (.1838, .2344, .2375, .2564), "dpsh": (.2730, .2841, .3111, .3242),
                 "cnnh": (.2488, .3047, .3263, .3387), "sdh": (.3687, .4292, .4446, .4600),
                 "itq_cca": (.2312, .4061, .4316, .4568), "ksh": (.3064, .3874, .4006, .4168),
                 "itq": (.1668, .2452, .2929, .3184), "sh": (.1194, .1776, .2143, .2335),
                 "lsh": (.0278, .0526, .0720, .0966)},
    "MS-COCO": {"dseh": (.5897, .6048, .6133, .6188), "hashnet": (.5600, .5850, .5989, .6056),
                "dhn": (.5353, .5456, .5486, .5555), "dpsh": (.5618, .5774, .5857, .5901),
                "cnnh": (.5115, .5232, .5283, .5328), "sdh": (.5312, .5632, .5634, .5741),
                "itq_cca": (.5418, .5658, .5704, .5715), "ksh": (.5496, .5574, .5628, .5688),
                "itq": (.4834, .4993, .5111, .5153), "sh": (.4494, .4400, .4397, .4316),
                "lsh": (.3718, .3807, .3945, .4119)},
}


def define_flags(values) -> None:
  """This script's flags besides ``--config`` (the dataset, as in train_dseh.py)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_list("methods", list(PAPER_DEEP + SHALLOW), "methods to run (the paper's "
                    f"by default; also {','.join(MODERN)})", flag_values=values)
  flags.DEFINE_list("bits", ["16", "32", "48", "64"], "code lengths", flag_values=values)
  flags.DEFINE_list("seeds", ["0"], "training seeds", flag_values=values)
  flags.DEFINE_string("shallow_features", "", "feature file for the shallow methods "
                      "(default: the inputs as vectors)", flag_values=values)
  flags.DEFINE_multi_string("select", [], "KEY=V1,V2,...: choose a deep method's setting on "
                            "a validation split (repeatable)", flag_values=values)
  flags.DEFINE_multi_string("select_shallow", [], "METHOD.PARAM=V1,V2,...: choose a shallow "
                            "method's fit argument on a validation split (repeatable), e.g. "
                            "ksh.num_anchors=300,1000", flag_values=values)
  flags.DEFINE_string("out", None, "output folder", flag_values=values)
  flags.mark_flag_as_required("out", flag_values=values)
  flags.DEFINE_bool("progress", False, "tqdm bars of the deep runs", flag_values=values)


def parse_args(argv=None):
  """``argv`` → the flags; ``.config`` is the dataset's config (its method is replaced by
  each of ``--methods``)."""
  from dseh_jax import command_line  # pylint: disable=import-outside-toplevel
  return command_line.parse(argv, define_flags, description=__doc__.splitlines()[0])


def ints(values, flag: str) -> list[int]:
  try:
    return [int(v) for v in values]
  except ValueError:
    raise SystemExit(f"--{flag} {','.join(values)!r}: expected comma-separated "
                     "integers") from None


def deep_config(args, method: str, seed: int, bits: list[int]):
  """The command line's config for ``method`` (its default settings), ``seed`` and
  ``bits``; a collapsed run is reported, not stopped."""
  from dseh_jax import methods  # pylint: disable=import-outside-toplevel
  config = methods.configure(args.config.copy_and_resolve_references(), method)
  config.bits, config.seed = tuple(bits), seed
  config.on_collapse = "warn"
  return config


def run_deep(args, method: str, seed: int, bits: list[int]) -> dict[int, dict]:
  """Every code length of one deep method and seed: ``{bits: row}``."""
  # pylint: disable=import-outside-toplevel
  from dseh_jax import selection
  from dseh_jax.data.registry import load_dataset
  from dseh_jax.experiment import prepare, train_and_evaluate
  config = deep_config(args, method, seed, bits)
  data = prepare(config, load_dataset(config.data, seed=seed), progress=args.progress)
  workdir = os.path.join(args.out, "runs", f"{method}_s{seed}")
  chosen = {}
  if args.select:
    chosen = selection.select(config, data, selection.parse_grid(args.select),
                              os.path.join(workdir, "selection")).best
    for key, value in chosen.items():
      selection.set_field(config, key, value)
  results = train_and_evaluate(config, data, workdir, progress=args.progress)["bits"]
  return {b: {**{k: results[str(b)].get(k) for k in ("map", "map_tie_aware", "nh",
                                                     "collapsed")},
              "selected": chosen} for b in bits}


def run_shallow(args, method: str, seed: int, bits: int, cache: dict) -> dict:
  # pylint: disable=import-outside-toplevel
  from dseh_jax import baselines, selection
  from dseh_jax.atomic_io import write_json
  if "data" not in cache:
    from dseh_jax.data.registry import load_dataset
    from dseh_jax.experiment import prepare
    config = deep_config(args, "dseh", seed, [bits])
    if args.shallow_features:
      config.data.name, config.data.kwargs = "features", {"path": args.shallow_features}
      config.imgnet.backbone = "none"
    cache["data"] = prepare(config, load_dataset(config.data, seed=seed), progress=False)
  grid = shallow_grid(args.select_shallow).get(method)
  chosen = {}
  bit_dir = os.path.join(args.out, "runs", f"{method}_s{seed}", f"bits{bits}")
  os.makedirs(bit_dir, exist_ok=True)
  if grid:
    found = selection.select_shallow(method, cache["data"], grid, bits=bits, seed=seed)
    write_json(os.path.join(bit_dir, "selection.json"), found.to_dict())
    chosen = found.best
  metrics, report = baselines.fit_and_evaluate(method, cache["data"], bits, seed, **chosen)
  write_json(os.path.join(bit_dir, "curves.json"), report.to_dict())   # as the trainer does
  return {**metrics, "selected": chosen}


def shallow_grid(items) -> dict[str, dict[str, list]]:
  """``--select_shallow`` items ``["ksh.num_anchors=300,1000", ...]`` → ``{"ksh":
  {"num_anchors": [300, 1000]}}``."""
  import inspect  # pylint: disable=import-outside-toplevel
  from dseh_jax import baselines, selection  # pylint: disable=import-outside-toplevel
  grids: dict[str, dict[str, list]] = {}
  for key, values in selection.parse_grid(items).items():
    method, sep, param = key.partition(".")
    if not sep or method not in SHALLOW:
      raise SystemExit(f"--select_shallow {key}: expected METHOD.PARAM=V1,V2 with METHOD "
                       f"one of {SHALLOW}")
    accepted = list(inspect.signature(baselines.FITTERS[method]).parameters)[4:]
    if param not in accepted:
      raise SystemExit(f"--select_shallow {key}: {method} takes {accepted or 'no options'}")
    grids.setdefault(method, {})[param] = values
  return grids


def summarize(rows: list[dict], dataset: str) -> tuple[list[str], list[dict]]:
  """Markdown lines and CSV records: mean ± std over seeds per method and code length
  (``dataset``: ``config.data.name``, for the paper's numbers)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  paper = PAPER.get(PAPER_SET.get(dataset, ""), {})
  bits = sorted({r["bits"] for r in rows})
  methods = list(dict.fromkeys(r["method"] for r in rows))
  head = "| method | " + " | ".join(f"{b} bits" for b in bits) + " |"
  lines = [head, "|---|" + "---|" * len(bits)]
  records = []
  for m in methods:
    cells = []
    for b in bits:
      cell = [r for r in rows if r["method"] == m and r["bits"] == b]
      if not cell:
        cells.append("")
        continue
      st = np.array([r["map"] for r in cell])
      ta = np.array([r["map_tie_aware"] for r in cell])
      ref = dict(zip(PAPER_BITS, paper.get(m, ()))).get(b)
      flag = " (collapsed)" if any(r.get("collapsed") for r in cell) else ""
      cells.append(f"{st.mean():.4f} ± {st.std():.4f} / {ta.mean():.4f} ± {ta.std():.4f}"
                   + (f" (paper {ref:.4f})" if ref else "") + flag)
      records.append({"method": m, "bits": b, "seeds": len(cell), "map_mean": st.mean(),
                      "map_std": st.std(), "map_tie_aware_mean": ta.mean(),
                      "map_tie_aware_std": ta.std(), "paper": ref or "",
                      "selected": json.dumps(cell[0].get("selected") or {})})
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  return lines, records


def write_tables(rows: list[dict], args) -> None:
  import csv  # pylint: disable=import-outside-toplevel
  lines, records = summarize(rows, args.config.data.name)
  seeds = sorted({r["seed"] for r in rows})
  with open(os.path.join(args.out, "table1.md"), "w", encoding="utf-8") as f:
    f.write(f"Table 1 on {args.config.data.name}: MAP@all, mean ± std over seeds {seeds}, ties "
            "stable / tie-aware\n\n" + "\n".join(lines) + "\n")
  with open(os.path.join(args.out, "table1.csv"), "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, list(records[0]) if records else ["method"])
    writer.writeheader()
    writer.writerows(records)


def main(argv=None) -> int:
  args = parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
  bits, seeds = ints(args.bits, "bits"), ints(args.seeds, "seeds")
  chosen = list(args.methods)
  unknown = [m for m in chosen if m not in DEEP + SHALLOW]
  if unknown:
    raise SystemExit(f"--methods: unknown {unknown}; expected some of {DEEP + SHALLOW}")
  shallow_grid(args.select_shallow)               # a bad grid fails before any training
  os.makedirs(args.out, exist_ok=True)
  rows_path = os.path.join(args.out, "rows.json")
  rows = json.load(open(rows_path, encoding="utf-8")) if os.path.exists(rows_path) else []
  done = {(r["method"], r["bits"], r["seed"]) for r in rows}
  for seed in seeds:
    cache: dict = {}
    for method in chosen:
      todo = [b for b in bits if (method, b, seed) not in done]
      if not todo:
        continue
      t0 = time.time()
      found = (run_deep(args, method, seed, todo) if method in DEEP else
               {b: run_shallow(args, method, seed, b, cache) for b in todo})
      for b, result in found.items():
        rows.append({"method": method, "bits": b, "seed": seed, **result,
                     "seconds": round((time.time() - t0) / len(todo), 1)})
        print(f"{method:>8} {b:>3} bits seed {seed}: MAP {result['map']:.4f} / tie-aware "
              f"{result['map_tie_aware']:.4f}, nh {result['nh']}", flush=True)
      with open(rows_path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
      write_tables(rows, args)
  write_tables(rows, args)
  print(open(os.path.join(args.out, "table1.md"), encoding="utf-8").read())
  return 0


if __name__ == "__main__":
  sys.exit(main())
