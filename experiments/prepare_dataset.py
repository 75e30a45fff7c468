"""Prepare a hashing dataset as TFDS ``array_record`` files (no TensorFlow needed).

    python experiments/prepare_dataset.py --dataset nus_wide21 \\
        --manual_dir ~/datasets/NUS-WIDE --data_dir ~/tensorflow_datasets
    python experiments/prepare_dataset.py --dataset coco_hashing --from_list_files \\
        --manual_dir ~/datasets/coco_lists --option image_root=~/datasets/coco

The splits follow SPEC §6 (``dseh_jax.data.protocols``) with ``--seed``, or the released
list files with ``--from_list_files``; ``--option KEY=VALUE`` passes protocol options such
as ``query_per_class=100``. Prints the config name and the split statistics, and how to
train on the result.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys

DATASETS = ("nus_wide21", "coco_hashing", "imagenet100_hashing")
TRAIN_CONFIGS = {"nus_wide21": "nuswide21", "coco_hashing": "coco",
                 "imagenet100_hashing": "imagenet100"}


def parse_options(items) -> dict:
  """``KEY=VALUE`` strings into a dict; values are Python literals or plain strings."""
  options = {}
  for item in items:
    if "=" not in item:
      raise SystemExit(f"--option {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    try:
      options[key] = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      options[key] = os.path.expanduser(raw)
  return options


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dataset", required=True, choices=DATASETS)
  p.add_argument("--manual_dir", required=True,
                 help="the raw files (see the builder's MANUAL_DOWNLOAD_INSTRUCTIONS)")
  p.add_argument("--data_dir", required=True, help="TFDS data folder to write into")
  p.add_argument("--seed", type=int, default=0, help="seeds the protocol's draws")
  p.add_argument("--from_list_files", action="store_true",
                 help="split by train.txt / test.txt / database.txt in --manual_dir")
  p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                 help="protocol or list-file option, e.g. query_per_class=100 (repeatable)")
  args = p.parse_args(argv)

  from dseh_jax.data import tfds_builders  # pylint: disable=import-outside-toplevel
  manual_dir = os.path.expanduser(args.manual_dir)
  data_dir = os.path.expanduser(args.data_dir)
  try:
    builder = tfds_builders.prepare(args.dataset, manual_dir, data_dir, seed=args.seed,
                                    from_list_files=args.from_list_files,
                                    **parse_options(args.option))
  except (ValueError, TypeError) as e:
    print(f"prepare_dataset: {e}", file=sys.stderr)
    return 1
  config = builder.builder_config.name
  print(f"prepared {args.dataset}/{config} under {data_dir}")
  print(json.dumps({"splits": {k: v.num_examples for k, v in builder.info.splits.items()},
                    "stats": dict(builder.info.metadata).get("stats", {})}, indent=1))
  print("train on it with:\n  python experiments/train_dseh.py "
        f"--config {TRAIN_CONFIGS[args.dataset]} --config.data.kwargs.data_dir={data_dir} "
        f"--config.data.name=tfds --config.data.kwargs.builder={args.dataset} "
        f"--config.data.kwargs.config={config} --workdir WORKDIR")
  return 0


if __name__ == "__main__":
  sys.exit(main())
