"""Train DSEH (or another method) and report MAP per code length.

    python experiments/train_dseh.py --config digits --workdir runs/digits
    python experiments/train_dseh.py --config digits:method=dpsh --config.bits=32 \\
        --workdir runs/dpsh
    python experiments/train_dseh.py --config dseh_jax/configs/nuswide21.py:choices=code \\
        --config.data.kwargs.data_dir=/data/NUS-WIDE --config.imgnet.optimizer.lr=3e-4 \\
        --workdir runs/nus

``--config`` is an ``ml_collections.config_flags`` config file with its argument
(``choices=…,method=…,variant=…``, ``dseh_jax.configs.compose``; the short names
``digits``, ``nuswide21``, … stand for the package's files), and ``--config.FIELD=VALUE``
overrides any field. Writes ``WORKDIR/results.json`` (MAP per bit length, config, seed,
versions, wall time), ``WORKDIR/bits{K}/codes.npz`` and ``history.json``; re-running the same
command resumes.
"""
from __future__ import annotations

import logging
import os
import sys
import time

from absl import flags

from dseh_jax import command_line


def define_flags(values: flags.FlagValues) -> None:
  """The flags of this script besides ``--config``."""
  flags.DEFINE_string("workdir", None, "run folder (results, checkpoints, codes)",
                      flag_values=values)
  flags.mark_flag_as_required("workdir", flag_values=values)
  flags.DEFINE_multi_string(
      "select", [], "KEY=V1,V2,...: choose KEY among the values on a validation split carved "
      "from the training set (never the queries), then train with the best (repeatable: the "
      "grid is every combination), e.g. --select imgnet.optimizer.lr=1e-4,3e-4,1e-3",
      flag_values=values)
  flags.DEFINE_float("select_fraction", 0.2, "share of the training points held out as "
                     "validation queries", flag_values=values)
  flags.DEFINE_enum("select_database", "train", ["train", "heldout"], "what the validation "
                    "queries are ranked against: the training points, or the other half of "
                    "the held-out points (unseen, as most real databases)",
                    flag_values=values)
  flags.DEFINE_bool("select_only", False, "stop after the selection (print and save its "
                    "table)", flag_values=values)
  flags.DEFINE_integer("host_devices", 0, "simulate N CPU devices (sets XLA_FLAGS before "
                       "JAX starts its backends)", flag_values=values)
  flags.DEFINE_bool("multihost", False, "one process of a multi-host run: join JAX's "
                    "distributed runtime from the cluster's variables (SLURM, Open MPI, …); "
                    "the DSEH_COORDINATOR / DSEH_NUM_PROCESSES / DSEH_PROCESS_ID variables "
                    "(experiments/launch_local.py) do it without this flag",
                    flag_values=values)
  flags.DEFINE_bool("no_progress", False, "hide the tqdm bars", flag_values=values)
  flags.DEFINE_bool("debug", False, "show the Python traceback of an error instead of its "
                    "one-line message", flag_values=values)


def parse_args(argv=None) -> flags.FlagValues:
  """``argv`` (without the program name) → the parsed flags; ``.config`` is the config."""
  return command_line.parse(argv, define_flags, description=__doc__.splitlines()[0])


def select_and_apply(config, data, args) -> None:
  """Runs the ``--select`` grid on the validation split and sets the best values in
  ``config`` (the table is in ``WORKDIR/selection/selection.json``; the values are in the
  config that ``results.json`` records)."""
  from dseh_jax import selection  # pylint: disable=import-outside-toplevel
  grid = selection.parse_grid(args.select)
  for key in grid:                       # a misspelt field fails before any training
    selection.set_field(config.copy_and_resolve_references(), key, grid[key][0])
  chosen = selection.select(config, data, grid, os.path.join(args.workdir, "selection"),
                            fraction=args.select_fraction, database=args.select_database,
                            progress=not args.no_progress)
  print(f"\nValidation split ({args.select_fraction:.0%} of the training set), "
        f"{chosen.bits} bits:\n{chosen.markdown()}\n")
  for key, value in chosen.best.items():
    selection.set_field(config, key, value)


def main(argv=None) -> int:
  """Runs :func:`run`; an error (a bad command line included) is one line on stderr (exit
  2) unless ``--debug``."""
  try:
    args = parse_args(argv)
  except SystemExit as e:
    if not isinstance(e.code, str):
      raise
    print(f"error: {e.code}".replace("\n", " "), file=sys.stderr)
    return 2
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
  # JAX starts its backends only after XLA_FLAGS and the distributed runtime are set.
  from dseh_jax import distributed, methods  # pylint: disable=import-outside-toplevel
  if not distributed.initialize_from_environment() and args.multihost:
    import jax  # pylint: disable=import-outside-toplevel
    jax.distributed.initialize()          # a cluster's own variables (SLURM, Open MPI, …)
  from dseh_jax.data.registry import load_dataset  # pylint: disable=import-outside-toplevel
  from dseh_jax.experiment import prepare, train_and_evaluate  # pylint: disable=import-outside-toplevel
  from dseh_jax.run_metrics import metric_columns  # pylint: disable=import-outside-toplevel
  from dseh_jax.configs.validation import validate_config  # pylint: disable=import-outside-toplevel

  config = args.config
  if isinstance(config.bits, int):        # --config.bits=32 from a hand-written file
    config.bits = (config.bits,)
  validate_config(config)                 # before the data are read

  os.makedirs(args.workdir, exist_ok=True)
  handlers = [logging.StreamHandler(sys.stdout)]
  if distributed.is_primary():            # one log file, written by process 0
    handlers.append(logging.FileHandler(os.path.join(args.workdir, "log.txt")))
  where = "" if distributed.is_primary() else f"[process {distributed.process_index()}] "
  logging.basicConfig(level=logging.INFO, force=True, handlers=handlers,
                      format=f"%(asctime)s %(levelname)s {where}%(message)s")
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
