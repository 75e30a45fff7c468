"""Train DSEH (or another method) and report MAP per code length.

    python experiments/train_dseh.py --config digits --bits 16,32,48,64 --workdir runs/digits
    python experiments/train_dseh.py --config digits --method dpsh --bits 32 --workdir runs/dpsh
    python experiments/train_dseh.py --config nuswide21 --choices code \\
        --data_dir /data/NUS-WIDE --set imgnet.optimizer.lr=3e-4 --workdir runs/nus

Writes ``WORKDIR/results.json`` (MAP per bit length, config, seed, versions, wall time),
``WORKDIR/bits{K}/codes.npz`` and ``history.json``; re-running the same command resumes.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import logging
import os
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="digits",
                 help="digits, digits_single, nuswide21, coco, imagenet100 or cifar10")
  p.add_argument("--choices", default=None, choices=("recipe", "paper", "code"),
                 help="recipe (default): the validated defaults; paper: the paper as "
                      "written; code: every choice of the authors' code")
  p.add_argument("--method", default="dseh",
                 help="a method of dseh_jax.methods (dseh, or the deep baselines dpsh, dhn, "
                      "hashnet, cnnh on the same backbone, trainer and evaluation); its "
                      "settings are config.<method>")
  p.add_argument("--variant", default="full", choices=("full", "S", "SS", "L", "A"),
                 help="the paper's ablations (Table 2): DSEH-S, -SS, -L, -A")
  p.add_argument("--bits", default="", help="comma-separated code lengths, e.g. 16,32")
  p.add_argument("--workdir", required=True)
  p.add_argument("--seed", type=int, default=None)
  p.add_argument("--data_dir", default="",
                 help="dataset folder (sets data.kwargs.data_dir): the raw NUS-WIDE, COCO or "
                      "ILSVRC layout, list files or Img.h5/Lab.h5")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override, e.g. --set imgnet.optimizer.lr=1e-3 (repeatable)")
  p.add_argument("--select", action="append", default=[], metavar="KEY=V1,V2,...",
                 help="choose KEY among the values on a validation split carved from the "
                      "training set (never the queries), then train with the best "
                      "(repeatable: the grid is every combination), e.g. --select "
                      "imgnet.optimizer.lr=1e-4,3e-4,1e-3")
  p.add_argument("--select_fraction", type=float, default=0.2,
                 help="share of the training points held out as validation queries")
  p.add_argument("--select_only", action="store_true",
                 help="stop after the selection (print and save its table)")
  p.add_argument("--host_devices", type=int, default=0,
                 help="simulate N CPU devices (sets XLA_FLAGS before JAX starts)")
  p.add_argument("--no_progress", action="store_true", help="hide the tqdm bars")
  p.add_argument("--debug", action="store_true",
                 help="show the Python traceback of an error instead of its one-line message")
  return p.parse_args(argv)


def apply_overrides(config, overrides) -> None:
  """``KEY=VALUE`` strings into ``config``; values are Python literals or plain strings."""
  for item in overrides:
    if "=" not in item:
      raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    node = config
    *parents, leaf = key.split(".")
    for i, name in enumerate(parents):
      if not hasattr(node, "keys") or name not in node:
        raise SystemExit(f"--set {key}: the config has no section "
                         f"{'.'.join(parents[:i + 1])!r}{_known(node, name)}")
      node = node[name]
    if leaf not in node and parents[-1:] != ["kwargs"]:   # loader kwargs are open-ended
      raise SystemExit(f"--set {key}: the config has no field {leaf!r} there"
                       f"{_known(node, leaf)}")
    if leaf not in node:
      node[leaf] = value
      continue
    if isinstance(node[leaf], float) and isinstance(value, int):
      value = float(value)
    if isinstance(node[leaf], str) and not isinstance(value, str):
      value = raw                       # a text field keeps the text, e.g. data.mean=1,2,3
    if isinstance(node[leaf], tuple) and isinstance(value, (list, int)):
      value = tuple(value) if isinstance(value, list) else (value,)
    try:
      node[leaf] = value
    except TypeError:
      raise SystemExit(f"--set {key}={raw}: expected a value of type "
                       f"{type(node[leaf]).__name__} (now {node[leaf]!r})") from None


def _known(node, name: str) -> str:
  """``"; did you mean 'x'? (fields there: …)"`` for a misspelt ``name`` under ``node``."""
  if not hasattr(node, "keys"):
    return ""
  names = sorted(node.keys())
  close = difflib.get_close_matches(name, names, n=1)
  hint = f"; did you mean {close[0]!r}?" if close else ""
  return f"{hint} (fields there: {', '.join(names)})"


def parse_bits(text: str) -> tuple[int, ...]:
  """``"16,32"`` → ``(16, 32)``; the range is checked with the rest of the config."""
  try:
    return tuple(int(b) for b in text.split(","))
  except ValueError:
    raise SystemExit(f"--bits {text!r}: expected comma-separated code lengths, e.g. "
                     "16,32,48,64") from None


def parse_grid(items) -> dict:
  """``["KEY=V1,V2", ...]`` → ``{KEY: [V1, V2]}`` with Python literals where they parse."""
  grid = {}
  for item in items:
    key, sep, raw = item.partition("=")
    if not sep or not raw:
      raise SystemExit(f"--select {item!r}: expected KEY=V1,V2,...")
    values = []
    for text in raw.split(","):
      try:
        values.append(ast.literal_eval(text))
      except (ValueError, SyntaxError):
        values.append(text)
    grid[key] = values
  return grid


def select_and_apply(config, data, args) -> None:
  """Runs the ``--select`` grid on the validation split and sets the best values in
  ``config`` (the table is in ``WORKDIR/selection/selection.json``; the values are in the
  config that ``results.json`` records)."""
  from dseh_jax import selection  # pylint: disable=import-outside-toplevel
  grid = parse_grid(args.select)
  for key in grid:                       # a misspelt field fails before any training
    selection.set_field(config.copy_and_resolve_references(), key, grid[key][0])
  chosen = selection.select(config, data, grid, os.path.join(args.workdir, "selection"),
                            fraction=args.select_fraction, progress=not args.no_progress)
  print(f"\nValidation split ({args.select_fraction:.0%} of the training set), "
        f"{chosen.bits} bits:\n{chosen.markdown()}\n")
  for key, value in chosen.best.items():
    selection.set_field(config, key, value)


def main(argv=None) -> int:
  """Runs :func:`run`; an error (a bad command line included) is one line on stderr (exit
  2) unless ``--debug``."""
  args = parse_args(argv)
  try:
    return run(args)
  except SystemExit as e:            # a bad command line (--set, --bits): its message
    if args.debug or not isinstance(e.code, str):
      raise
    print(f"error: {e.code}".replace("\n", " "), file=sys.stderr)
    return 2
  except Exception as e:  # pylint: disable=broad-except  # one line for the user
    if args.debug:
      raise
    print(f"error: {type(e).__name__}: {e} (--debug shows the traceback)".replace("\n", " "),
          file=sys.stderr)
    return 2


def run(args) -> int:
  from dseh_jax.host_devices import simulate_cpu_devices  # pylint: disable=import-outside-toplevel
  simulate_cpu_devices(args.host_devices)
  # JAX is imported only after XLA_FLAGS is final.
  from dseh_jax import configs, methods  # pylint: disable=import-outside-toplevel
  from dseh_jax.configs import variants  # pylint: disable=import-outside-toplevel
  from dseh_jax.data.registry import load_dataset  # pylint: disable=import-outside-toplevel
  from dseh_jax.experiment import prepare, train_and_evaluate  # pylint: disable=import-outside-toplevel
  from dseh_jax.run_metrics import metric_columns  # pylint: disable=import-outside-toplevel
  from dseh_jax.configs.validation import validate_config  # pylint: disable=import-outside-toplevel

  config = configs.get_config(args.config, args.choices)
  variants.apply_variant(config, args.variant)
  methods.configure(config, args.method)
  if args.bits:
    config.bits = parse_bits(args.bits)
  if args.seed is not None:
    config.seed = args.seed
  if args.data_dir:
    config.data.kwargs.data_dir = args.data_dir
  apply_overrides(config, args.set)
  validate_config(config)                 # before the data are read

  os.makedirs(args.workdir, exist_ok=True)
  logging.basicConfig(
      level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True,
      handlers=[logging.StreamHandler(sys.stdout),
                logging.FileHandler(os.path.join(args.workdir, "log.txt"))])
  for noisy in ("absl", "orbax", "jax"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

  start = time.time()
  data = prepare(config, load_dataset(config.data, seed=config.seed),
                 progress=not args.no_progress)
  if args.select:
    select_and_apply(config, data, args)
    if args.select_only:
      return 0
  results = train_and_evaluate(config, data, args.workdir, progress=not args.no_progress,
                               check_images=False)
  print(f"\n{methods.LABELS[config.method]} on {data.name} ({len(data.query)} queries, "
        f"{len(data.database)} database, "
        f"{len(data.train)} train); seed {config.seed}; {time.time() - start:.0f} s")
  ties = tuple(config.eval.ties)
  names = metric_columns(config.eval)
  zero = results["bits"][str(config.bits[0])].get("zero_relevant_queries", "?")
  print(f"(MAP: ties {ties[0]}; {zero} queries have no relevant database item: "
        f"eval.zero_relevant={config.eval.zero_relevant})")
  print("| bits | " + " | ".join(n for n, _ in names) + " | nh | seconds |")
  print("|---|" + "---|" * (len(names) + 2))
  for bits in config.bits:
    r = results["bits"][str(bits)]
    cells = [f"{r[key]:.4f}" if key in r else "" for _, key in names]
    flag = " (collapsed: on_collapse=warn)" if r.get("collapsed") else ""
    print(f"| {bits} | " + " | ".join(cells) + f" | {r.get('nh', '')} | "
          f"{r.get('wall_seconds', 0):.0f} |{flag}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
