"""The whole feature-mode DSEH schedule at NUS-WIDE scale, end to end, on synthetic data.

    python experiments/bench_schedule.py --out runs/bench_schedule      # NUS-WIDE shapes
    python experiments/bench_schedule.py --epochs code --out runs/bench_code  # 40 per round
    python experiments/bench_schedule.py --quick --out runs/bench_quick   # tiny, a smoke run

NUS-WIDE-shaped inputs (``dseh_jax.data.synthetic``: 21 concepts with the real set's skewed
frequencies; 4096-d fc7-like features following the labels): 10,500 training points,
2,100 queries and 193,734 database items (the training points among them), the
``nuswide21`` config in feature mode (3 rounds), one code length. ``--epochs config``
keeps the config's epoch counts (the recipe: LabNet 30/20/10, ImgNet 100 per round);
``--epochs code`` takes NUS-WIDE's counts of the authors' code (SPEC: ImgNet 40 per round).
The config's diagnostics run as a user has them (LabNet's ``map_l`` over the database every
5th LabNet epoch and at each round's end).
Reports the wall time of every phase, of encoding and evaluating the database, and end to
end, with the machine and versions; writes ``OUT/bench_schedule.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", required=True)
  p.add_argument("--bits", type=int, default=32)
  p.add_argument("--epochs", choices=("config", "code"), default="config",
                 help="epochs per round: the config's (recipe) or the authors' code's")
  p.add_argument("--quick", action="store_true",
                 help="1,050 / 210 / 5,000 points, 256-d, 2+1 epochs per network")
  p.add_argument("--host_devices", type=int, default=0,
                 help="simulate N CPU devices (sets XLA_FLAGS before JAX starts)")
  return p.parse_args(argv)


def make_data(args):
  """The synthetic NUS-shaped ``RetrievalData`` (database = training + the rest)."""
  # pylint: disable=import-outside-toplevel
  import numpy as np
  from dseh_jax.data import synthetic
  from dseh_jax.data.splits import RetrievalData, Split
  n_train, n_query, n_db, dim = ((1_050, 210, 5_000, 256) if args.quick
                                 else (10_500, 2_100, 193_734, 4096))
  labels = synthetic.nus_shaped_labels(n_query + n_db, seed=0)
  x = synthetic.labelled_features(labels, dim, noise=2.0, seed=0)
  ids = np.arange(len(labels))
  q, db = slice(0, n_query), slice(n_query, None)
  train = slice(n_query, n_query + n_train)                 # train ⊂ database
  split = lambda s: Split(x[s], labels[s], ids[s])
  return RetrievalData("nus_shaped", split(train), split(q), split(db),
                       tuple(f"c{k}" for k in range(labels.shape[1])))


def make_config(args):
  from dseh_jax import configs  # pylint: disable=import-outside-toplevel
  c = configs.get_config("nuswide21")
  c.imgnet.backbone = "none"
  c.bits = (args.bits,)
  c.on_collapse = "warn"
  if args.epochs == "code":
    code = configs.get_config("nuswide21", "choices=code")
    c.labnet.epochs_per_round = code.labnet.epochs_per_round
    c.imgnet.epochs_per_round = code.imgnet.epochs_per_round
  if args.quick:
    c.labnet.epochs_per_round, c.imgnet.epochs_per_round = (2, 1), (2, 1)
  return c


def phase_seconds(history) -> dict[str, float]:
  out: dict[str, float] = {}
  for h in history:
    if h["kind"] == "epoch":
      key = f"{h['network']} round {h['round']}"
      out[key] = out.get(key, 0.0) + h["seconds"]
  return out


def main(argv=None) -> int:
  args = parse_args(argv)
  from dseh_jax.host_devices import simulate_cpu_devices  # pylint: disable=import-outside-toplevel
  simulate_cpu_devices(args.host_devices)
  # pylint: disable=import-outside-toplevel
  import jax
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from bench_train import cpu_model, versions
  from dseh_jax.data.standardize import standardize
  from dseh_jax.trainer import Trainer
  run_dir = os.path.join(args.out, "run")
  if os.path.isdir(run_dir) and os.listdir(run_dir):
    raise SystemExit(f"--out {args.out}: {run_dir} holds an earlier run, which the trainer "
                     "would resume instead of training (no timing); expected a new --out")
  os.makedirs(args.out, exist_ok=True)
  t0 = time.time()
  config = make_config(args)
  data = standardize(make_data(args), config.data.standardize)
  t_data = time.time() - t0
  trainer = Trainer(config, data, args.bits, run_dir, progress=False)
  t1 = time.time()
  result = trainer.run()
  total = time.time() - t1
  phases = phase_seconds(result.history)
  training = sum(phases.values())
  report = {"machine": cpu_model(), "devices": f"{jax.local_device_count()} x "
            f"{jax.devices()[0].platform}", "versions": versions(False),
            "epochs_per_round": {"labnet": list(config.labnet.epochs_per_round),
                                 "imgnet": list(config.imgnet.epochs_per_round)},
            "shapes": {"train": len(data.train), "query": len(data.query),
                       "database": len(data.database), "dim": data.input_shape[0]},
            "data_seconds": round(t_data, 1), "phase_seconds": phases,
            "training_seconds": round(training, 1),
            "other_seconds": round(total - training, 1),     # phase-end passes, evaluation
            "end_to_end_seconds": round(total, 1),
            "map": result.metrics.get("map"), "nh": result.metrics.get("nh")}
  lines = [f"Machine: {report['machine']}, {report['devices']}; "
           + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
           f"Epochs per round: LabNet {report['epochs_per_round']['labnet']}, "
           f"ImgNet {report['epochs_per_round']['imgnet']} ({args.epochs})",
           "", "| part | seconds |", "|---|---|"]
  lines += [f"| {k} | {v:.1f} |" for k, v in phases.items()]
  lines += [f"| encoding, phase-end passes, evaluation | {report['other_seconds']:.1f} |",
            f"| **end to end (after the data)** | **{report['end_to_end_seconds']:.1f}** |"]
  with open(os.path.join(args.out, "bench_schedule.json"), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=1)
  with open(os.path.join(args.out, "bench_schedule.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
