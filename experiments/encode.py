"""Encode a dataset split of a trained run into packed code files (SPEC §4, §6).

    python experiments/encode.py --workdir runs/nus --bits 32 --split all --out runs/nus/codes32
    python experiments/encode.py --workdir runs/nus --bits 32 --split query \\
        --source checkpoint --data_dir /data/NUS-WIDE --out codes/

Writes ``OUT/<split>.npz`` (see ``dseh_jax.evaluation.code_files``). ``--source auto``
(default) reads the codes the trainer saved in ``WORKDIR/bits{K}/codes.npz`` when it is
there and ``checkpoint`` restores ImgNet from the run's latest checkpoint and encodes the
split again (this needs the dataset; ``--data_dir`` points at a moved copy). Code files
read from ``codes.npz`` carry labels only with ``--with_labels``, which loads the dataset.
"""
# pylint: disable=import-outside-toplevel  (JAX is imported only after XLA_FLAGS is set)
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional

SPLITS = ("train", "query", "database")


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="the run folder given to train_dseh.py")
  p.add_argument("--bits", type=int, required=True, help="code length K (folder bits{K})")
  p.add_argument("--split", default="all", choices=SPLITS + ("all",))
  p.add_argument("--out", required=True, help="folder for <split>.npz")
  p.add_argument("--source", default="auto", choices=("auto", "codes", "checkpoint"),
                 help="auto: bits{K}/codes.npz when present, else the latest checkpoint")
  p.add_argument("--data_dir", default="",
                 help="dataset folder when it moved since training (data.kwargs.data_dir)")
  p.add_argument("--with_labels", action="store_true",
                 help="with --source codes: load the dataset to store labels as well")
  p.add_argument("--batch_size", type=int, default=0,
                 help="encoding batch (default: the run's eval.batch_size)")
  p.add_argument("--host_devices", type=int, default=0,
                 help="simulate N CPU devices (sets XLA_FLAGS before JAX starts)")
  return p.parse_args(argv)


def _read_json(path: str) -> Optional[dict[str, Any]]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _load_data(config_dict: dict[str, Any], data_dir: str):
  """The run's dataset, read as its config says (``data_dir`` overrides the folder)."""
  import ml_collections
  from dseh_jax.data.registry import load_dataset
  config = ml_collections.ConfigDict(config_dict)
  if data_dir:
    config.data.kwargs.data_dir = data_dir
  return load_dataset(config.data, seed=config.seed)


def _meta(config_dict: Optional[dict[str, Any]], num_bits: int, source: str,
          **extra: Any) -> dict[str, Any]:
  from dseh_jax.evaluation.code_files import config_hash
  from dseh_jax.methods import LABELS
  method = (config_dict or {}).get("method", "dseh")
  meta = {"method": LABELS.get(method, method), "num_bits": int(num_bits), "source": source,
          **extra}
  if config_dict is not None:
    meta["dataset"] = config_dict.get("data", {}).get("name", "")
    meta["config_hash"] = config_hash(config_dict)
  return meta


def encode_from_codes(args, bit_dir: str, splits) -> dict[str, Any]:
  """Code files from the trainer's ``codes.npz`` (no network runs)."""
  import numpy as np
  from dseh_jax.evaluation.code_files import save_code_file
  path = os.path.join(bit_dir, "codes.npz")
  results = _read_json(os.path.join(args.workdir, "results.json"))
  config_dict = None if results is None else results.get("config")
  with np.load(path, allow_pickle=False) as npz:
    stored = {name: npz[name] for name in npz.files}
  data = None
  if args.with_labels:
    if config_dict is None:
      raise ValueError(f"{args.workdir}/results.json is missing: --with_labels needs the "
                       "run's config to load the dataset")
    data = _load_data(config_dict, args.data_dir)
  written = {}
  for split in splits:
    for field in (f"{split}_codes", f"{split}_ids"):
      if field not in stored:
        raise ValueError(f"{path}: missing field {field!r}; it holds {sorted(stored)}")
    codes, ids = stored[f"{split}_codes"], stored[f"{split}_ids"]
    if codes.ndim != 2 or codes.shape[1] != args.bits:
      raise ValueError(f"{path}: field '{split}_codes' has shape {codes.shape}; expected "
                       f"[n, {args.bits}]")
    labels = None
    if data is not None:
      part = data.splits()[split]
      if not np.array_equal(part.ids, ids):
        raise ValueError(f"{path}: field '{split}_ids' differs from the ids of the dataset's "
                         f"{split} split; the dataset changed since training")
      labels = part.labels
    out = os.path.join(args.out, f"{split}.npz")
    save_code_file(out, codes, ids, split=split, labels=labels,
                   meta=_meta(config_dict, args.bits, "codes.npz", workdir=args.workdir))
    written[split] = (out, codes.shape[0])
  return written


def encode_from_checkpoint(args, bit_dir: str, splits) -> dict[str, Any]:
  """Code files from the method's encoder (ImgNet) restored from the run's latest checkpoint."""
  import jax
  import ml_collections
  from dseh_jax.checkpointing import RunCheckpointer
  from dseh_jax.evaluation.code_files import save_code_file
  from dseh_jax.evaluation.encoding import encode_split
  from dseh_jax import methods
  ckpt_dir = os.path.join(bit_dir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise ValueError(f"{ckpt_dir}: no checkpoints; train the run first (train_dseh.py)")
  reader = RunCheckpointer(ckpt_dir)
  step = reader.latest_step()
  if step is None:
    reader.close()
    raise ValueError(f"{ckpt_dir}: holds no complete checkpoint")
  meta = reader.read_meta(step)
  reader.close()
  if int(meta["num_bits"]) != args.bits:
    raise ValueError(f"{ckpt_dir}: field 'num_bits' is {meta['num_bits']}; expected "
                     f"{args.bits}")
  config_dict = meta["config"]
  config = ml_collections.ConfigDict(config_dict)
  data = _load_data(config_dict, args.data_dir)
  # The encoder's parameters alone, restored into a freshly built network of the same shape.
  method = methods.get_method(config.get("method", "dseh"))
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  encoder = method.create_states(config, data, args.bits, keys)[method.encoder]
  reader = RunCheckpointer(ckpt_dir)
  step, params, meta = reader.restore_latest_params(method.encoder, encoder.params)
  reader.close()
  epochs_done = int(meta["epochs_done"])
  total = sum(p.epochs for p in method.plan(config))
  complete = epochs_done >= total
  if not complete:
    print(f"warning: the latest checkpoint is after epoch {epochs_done} of "
          f"{total}; encoding with a partly trained {methods.LABELS[method.name]}",
          file=sys.stderr)
  batch_size = args.batch_size or int(config.eval.batch_size)
  written = {}
  for split in splits:
    part = data.splits()[split]
    packed, num_bits = encode_split(encoder.apply_fn, params, part.inputs,
                                    batch_size=batch_size)
    out = os.path.join(args.out, f"{split}.npz")
    save_code_file(out, packed, part.ids, split=split, num_bits=num_bits, labels=part.labels,
                   meta=_meta(config_dict, num_bits, "checkpoint", workdir=args.workdir,
                              checkpoint_step=int(step), epochs_done=int(epochs_done),
                              complete=bool(complete)))
    written[split] = (out, len(part))
  return written


def main(argv=None) -> int:
  args = parse_args(argv)
  from dseh_jax.host_devices import simulate_cpu_devices  # pylint: disable=import-outside-toplevel
  simulate_cpu_devices(args.host_devices)
  bit_dir = os.path.join(args.workdir, f"bits{args.bits}")
  splits = SPLITS if args.split == "all" else (args.split,)
  source = args.source
  if source == "auto":
    source = "codes" if os.path.exists(os.path.join(bit_dir, "codes.npz")) else "checkpoint"
  try:
    if source == "codes":
      written = encode_from_codes(args, bit_dir, splits)
    else:
      written = encode_from_checkpoint(args, bit_dir, splits)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for split, (path, n) in written.items():
    print(f"{split}: {n} codes of {args.bits} bits -> {path} (from {source})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
