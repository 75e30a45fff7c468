"""``load_dataset(data_config)``: the dataset named by a config's ``data`` section (SPEC §6).

Names and their ``data.kwargs``:

* ``digits_mosaic``, ``digits_single``: the embedded digits (``build_digits_mosaic``);
* ``features`` (``.npz``, ``.mat`` or ``.h5``) and ``features_npz``: ``path``;
* ``nus_wide21``, ``coco``, ``imagenet100``: the raw layouts under ``data_dir``, split by
  the paper's protocol (``dseh_jax.data.nus_wide`` / ``coco`` / ``imagenet``), seeded by
  ``kwargs.seed`` or else the run's seed;
* ``cifar10``: the official python batches or ``train/``/``test/`` class folders under
  ``data_dir`` (``dseh_jax.data.cifar10``), split by the standard deep-hashing protocol,
  seeded like ``nus_wide21``; in-memory arrays ``pixel / scale`` (no resize, no mean);
* ``cifar10_mosaic``: multi-label 2×2 mosaics of the same photos
  (``dseh_jax.data.cifar10_mosaic``), a multi-label development set;
* ``usps``: ``path`` to ``USPS.mat`` (``fea``, ``gnd``), split per class like CIFAR-10
  (``dseh_jax.data.usps``), seeded like ``nus_wide21``;
* ``list_files``: ``train.txt`` / ``test.txt`` / ``database.txt`` under ``data_dir``;
* ``hdf5_layout``: the authors' ``Img.h5`` + ``Lab.h5`` under ``data_dir``;
* ``tfds``: a dataset prepared by ``experiments/prepare_dataset.py`` (``builder``,
  ``data_dir``, ``config``).

Image datasets come back with lazy ``ImageArray`` inputs, preprocessed as the data config
says: ``image_size`` (224), ``resize_to`` (0) and ``mean`` (``"vgg_f"``, ``"none"`` or
three numbers).
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Mapping, Optional

from dseh_jax.data.cifar10 import build_cifar10
from dseh_jax.data.cifar10_mosaic import build_cifar10_mosaic
from dseh_jax.data.coco import build_coco
from dseh_jax.data.digits_mosaic import build_digits_mosaic
from dseh_jax.data.features import FEATURE_FIELDS, load_feature_file, load_feature_npz
from dseh_jax.data.hdf5_layout import build_hdf5_layout
from dseh_jax.data.imagenet import build_imagenet100
from dseh_jax.data.list_files import build_list_files
from dseh_jax.data.listing import to_retrieval_data
from dseh_jax.data.nus_wide import build_nus_wide21
from dseh_jax.data.splits import RetrievalData
from dseh_jax.data.standardize import standardize
from dseh_jax.data.usps import build_usps

__all__ = ["FEATURE_FIELDS", "NAMES", "load_dataset", "load_feature_file", "load_feature_npz"]

IMAGE_LOADERS: dict[str, Callable[..., Any]] = {
    "nus_wide21": build_nus_wide21, "coco": build_coco, "imagenet100": build_imagenet100,
    "list_files": build_list_files, "hdf5_layout": build_hdf5_layout}
# Folder datasets loaded as in-memory arrays, already at the network's input size.
ARRAY_LOADERS: dict[str, Callable[..., Any]] = {"cifar10": build_cifar10,
                                                "cifar10_mosaic": build_cifar10_mosaic}
SEEDED = ("nus_wide21", "coco", "imagenet100", "cifar10", "cifar10_mosaic")
# One labelled table file (data.kwargs.path), split by a per-class protocol.
TABLE_LOADERS: dict[str, Callable[..., Any]] = {"usps": build_usps}
NAMES = ("digits_mosaic", "digits_single", "features", "features_npz") + tuple(
    TABLE_LOADERS) + tuple(
    IMAGE_LOADERS) + tuple(ARRAY_LOADERS) + ("tfds",)


def _check_options(name: str, loader: Callable[..., Any], kwargs: dict[str, Any]) -> None:
  """Unknown ``data.kwargs`` keys are a ValueError listing the loader's options. A
  ``seed`` the loader does not take is dropped: it seeds protocol splits, and datasets with
  fixed splits (feature files, the embedded sets' own seeds aside) have none."""
  params = inspect.signature(loader).parameters
  accepted = [p for p in params if p != "data_dir" and params[p].kind in (
      inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
  if "seed" in kwargs and "seed" not in accepted:
    kwargs.pop("seed")
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    close = {u: difflib.get_close_matches(u, accepted, n=1) for u in unknown}
    hint = " or ".join(f"data.kwargs.{c[0]} for {u}" for u, c in close.items() if c)
    raise ValueError(f"data.kwargs {unknown} are not options of dataset {name!r}; expected "
                     f"some of {accepted}{'; did you mean ' + hint + '?' if hint else ''}")


def preprocessing(data_config: Mapping[str, Any]) -> dict[str, Any]:
  """``image_size``, ``resize_to`` and ``mean`` of the data config, with defaults."""
  mean = data_config.get("mean", "vgg_f")
  return {"image_size": int(data_config.get("image_size", 224)),
          "resize_to": int(data_config.get("resize_to", 0)),
          "mean": tuple(mean) if isinstance(mean, list) else mean}


def load_dataset(data_config: Mapping[str, Any], *, seed: Optional[int] = None
                 ) -> RetrievalData:
  """The dataset of ``data_config`` (see :func:`read_dataset`), its inputs standardised as
  ``data_config["standardize"]`` says (``"none"`` by default; ``dseh_jax.data.standardize``).
  """
  data = read_dataset(data_config, seed=seed)
  return standardize(data, str(data_config.get("standardize", "none")))


def read_dataset(data_config: Mapping[str, Any], *, seed: Optional[int] = None
                 ) -> RetrievalData:
  """Builds or reads the dataset ``data_config["name"]`` with ``data_config["kwargs"]``.

  Args:
    data_config: ``name``, ``kwargs`` and, for images, ``image_size``, ``resize_to``,
      ``mean`` (module docstring).
    seed: the run's seed; seeds the protocol split of ``nus_wide21``, ``coco``,
      ``imagenet100`` and ``cifar10`` unless ``kwargs.seed`` is given (default 0).
  """
  name = data_config["name"]
  kwargs = dict(data_config.get("kwargs", {}) or {})
  # The real configs carry data_dir="" (filled by --config.data.kwargs.data_dir); loaders without a folder
  # ignore an empty one.
  if (not kwargs.get("data_dir", "x") and name not in IMAGE_LOADERS
      and name not in ARRAY_LOADERS and name != "tfds"):
    kwargs.pop("data_dir")
  if name in ("digits_mosaic", "digits_single"):
    _check_options(name, build_digits_mosaic, kwargs)
    if name == "digits_single":
      kwargs["single_label"] = True
    return build_digits_mosaic(**kwargs)
  if name in ("features", "features_npz"):
    if "path" not in kwargs:
      raise ValueError(f"data.name={name!r} needs data.kwargs.path (an .npz, .mat or .h5 "
                       "file)")
    loader = load_feature_npz if name == "features_npz" else load_feature_file
    _check_options(name, loader, kwargs)
    return loader(kwargs.pop("path"), **kwargs)
  if name in TABLE_LOADERS:
    if not kwargs.get("path"):
      raise ValueError(f"data.name={name!r} needs data.kwargs.path (e.g. USPS.mat)")
    kwargs.setdefault("seed", 0 if seed is None else int(seed))
    _check_options(name, TABLE_LOADERS[name], kwargs)
    return TABLE_LOADERS[name](kwargs.pop("path"), **kwargs)
  if name in IMAGE_LOADERS or name in ARRAY_LOADERS:
    loader = IMAGE_LOADERS.get(name) or ARRAY_LOADERS[name]
    data_dir = kwargs.pop("data_dir", "")
    if not data_dir:
      raise ValueError(f"data.name={name!r} needs data.kwargs.data_dir (the dataset folder; "
                       "--config.data.kwargs.data_dir=… on the command line)")
    if name in SEEDED and "seed" not in kwargs:
      kwargs["seed"] = 0 if seed is None else int(seed)
    _check_options(name, loader, kwargs)
    if name in ARRAY_LOADERS:
      return loader(str(data_dir), **kwargs)
    return to_retrieval_data(loader(str(data_dir), **kwargs), **preprocessing(data_config))
  if name == "tfds":
    from dseh_jax.data.tfds_builders import read_prepared  # pylint: disable=import-outside-toplevel
    missing = [k for k in ("builder", "data_dir") if not kwargs.get(k)]
    if missing:
      raise ValueError(f"data.name='tfds' needs data.kwargs {missing} (the TFDS name and the "
                       "folder given to experiments/prepare_dataset.py)")
    unknown = sorted(set(kwargs) - {"builder", "data_dir", "config"})
    if unknown:
      raise ValueError(f"data.kwargs {unknown} are not options of dataset 'tfds'; expected "
                       "some of ['builder', 'data_dir', 'config']")
    return read_prepared(str(kwargs["builder"]), str(kwargs["data_dir"]),
                         config=str(kwargs.get("config", "protocol_seed0")),
                         **preprocessing(data_config))
  raise ValueError(
      f"dataset {name!r} has no loader; available: {', '.join(NAMES)} (precomputed "
      "features: set data.name=features, data.kwargs.path=FILE and imgnet.backbone=none)")
