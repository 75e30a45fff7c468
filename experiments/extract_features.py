"""Extract ImageNet CNN-F fc7 features of every split (SPEC §4 feature mode).

    python experiments/extract_features.py --config nuswide21 \\
        --config.data.kwargs.data_dir=/data/NUS-WIDE --weights imagenet-vgg-f.mat \\
        --out feats.npz

Runs the pretrained CNN-F (conv1…fc7, deterministic: no dropout) over the train, query and
database images and writes ``x_train, y_train, x_query, y_query, x_database, y_database``
plus ``ids_train, ids_query, ids_database`` to ``--out`` (.npz, written atomically). Train
DSEH in feature mode on it with ``--config.data.name=features
--config.data.kwargs.path=OUT --config.imgnet.backbone=none``. ``--config`` and its
``--config.FIELD=VALUE`` overrides are train_dseh.py's.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Optional

import jax
import numpy as np

from absl import flags

from dseh_jax import atomic_io, command_line, input_pipeline, models, pretrained
from dseh_jax import train_steps as ts
from dseh_jax.data.splits import RetrievalData

log = logging.getLogger("dseh_jax")
SPLITS = ("train", "query", "database")


def extract_features(data: RetrievalData, backbone_params: dict[str, Any], *,
                     spec: models.BackboneSpec = models.CNNF, batch_size: int = 256,
                     mean: Optional[np.ndarray] = None, progress: bool = True
                     ) -> dict[str, np.ndarray]:
  """fc7 features of every split of ``data`` (SPEC §4 feature mode).

  Args:
    data: image splits (``inputs [n, H, W, 3]``, an array or an ``ImageArray``).
    backbone_params: ``{conv1…fc7: {kernel, bias}}`` (from ``pretrained.load_vggf``).
    spec: the backbone the parameters belong to.
    batch_size: global batch, rounded down to a multiple of the local device count.
    mean: when given and a split's inputs are an ``ImageArray``, subtract this mean
      (e.g. the .mat file's average image) instead of the dataset's.
    progress: show a tqdm bar per split.

  Returns:
    ``x_{split}`` float32 ``[n, fc7]``, ``y_{split}`` float32 labels ``[n, c]`` and
    ``ids_{split}`` int64 ``[n]`` for ``split`` in train, query, database.
  """
  num_devices = jax.local_device_count()
  predict = ts.make_predict_fn(models.ConvBackbone(spec).apply)
  params = ts.replicate(backbone_params)
  out: dict[str, np.ndarray] = {}
  for name in SPLITS:
    split = getattr(data, name)
    inputs = split.inputs
    if mean is not None and isinstance(inputs, input_pipeline.ImageArray):
      inputs = inputs.with_mean(mean)
    out[f"x_{name}"] = (
        np.asarray(ts.predict_in_batches(predict, params, inputs, batch_size, num_devices,
                                         progress=f"fc7 {name}" if progress else ""),
                   np.float32) if len(inputs)
        else np.zeros((0, spec.fc_units[-1][1]), np.float32))
    out[f"y_{name}"] = np.asarray(split.labels, np.float32)
    out[f"ids_{name}"] = np.asarray(split.ids, np.int64)
  return out


def write_features(path: str, features: dict[str, np.ndarray]) -> None:
  """Writes ``features`` to ``path`` (.npz) atomically: temp file in the folder, rename."""
  atomic_io.atomic_write(path, lambda f: np.savez(f, **features))


def define_flags(values: flags.FlagValues) -> None:
  """This script's flags besides ``--config`` (e.g. nuswide21, coco or imagenet100)."""
  for name, text in (("weights", "MatConvNet imagenet-vgg-f.mat"), ("out", "output .npz")):
    flags.DEFINE_string(name, None, text, flag_values=values)
    flags.mark_flag_as_required(name, flag_values=values)
  flags.DEFINE_integer("batch_size", 256, "images per forward pass", flag_values=values)
  flags.DEFINE_enum("mean", "file", ["file", "config"], "'file': subtract the .mat's "
                    "averageImage; 'config': the dataset config's mean (data.mean)",
                    flag_values=values)
  flags.DEFINE_integer("host_devices", 0, "simulate N CPU devices (sets XLA_FLAGS before "
                       "JAX starts its backends)", flag_values=values)
  flags.DEFINE_bool("no_progress", False, "hide the tqdm bars", flag_values=values)


def parse_args(argv=None) -> flags.FlagValues:
  return command_line.parse(argv, define_flags, description=__doc__.splitlines()[0],
                            default_config="nuswide21")


def main(argv=None) -> int:
  args = parse_args(argv)
  from dseh_jax.host_devices import simulate_cpu_devices  # pylint: disable=import-outside-toplevel
  simulate_cpu_devices(args.host_devices)   # before JAX starts its backend
  from dseh_jax.data.registry import load_dataset  # pylint: disable=import-outside-toplevel

  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  config = args.config
  spec = models.BACKBONES["cnnf"]
  t0 = time.time()
  data = load_dataset(config.data, seed=config.seed)
  image_size = int(data.input_shape[0])
  loaded = pretrained.load_vggf(args.weights, spec, image_size=image_size)
  mean = loaded.average_image if args.mean == "file" else None
  if args.mean == "file" and mean is None:
    log.warning("%s has no averageImage; keeping the dataset's mean", args.weights)
  log.info("%s: train %d, query %d, database %d images; %d devices", data.name,
           len(data.train), len(data.query), len(data.database), jax.local_device_count())
  features = extract_features(data, loaded.params, spec=spec, batch_size=args.batch_size,
                              mean=mean, progress=not args.no_progress)
  write_features(args.out, features)
  log.info("wrote %s (%s) in %.1f s", args.out,
           ", ".join(f"{k} {v.shape}" for k, v in features.items() if k.startswith("x_")),
           time.time() - t0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
