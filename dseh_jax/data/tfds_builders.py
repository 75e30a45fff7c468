"""TFDS builders for the three hashing datasets (SPEC §6), prepared without TensorFlow.

``nus_wide21``, ``coco_hashing`` and ``imagenet100_hashing`` read the raw files from
``manual_dir`` and split them with the same protocol functions as the direct loaders
(``dseh_jax.data.nus_wide`` etc.), or, with a ``list_files`` config, from released list
files. Splits ``query``, ``train`` and ``database``; every example is
``{"image": raw encoded bytes, "label": [c] float32 multi-hot, "id": int64, "path": text}``.
Stored as ``array_record`` (TFDS needs TensorFlow only for ``tfrecord``, ``tfds.load``,
``as_dataset`` and ``tfds.features.Image``, none of which is used here); read back with
``read_prepared``, which wraps the stored bytes in lazy ``ImageArray``s.

    builder = NusWide21(data_dir=DATA_DIR, config=make_config(seed=0),
                        file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR))
    data = read_prepared("nus_wide21", DATA_DIR, config="protocol_seed0")
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from dseh_jax.data.coco import build_coco
from dseh_jax.data.imagenet import build_imagenet100
from dseh_jax.data.list_files import build_list_files
from dseh_jax.data.listing import SPLITS, ImageDataset, resolve_mean
from dseh_jax.data.nus_wide import build_nus_wide21
from dseh_jax.data.splits import RetrievalData, Split
from dseh_jax.atomic_io import jsonable

VERSION = tfds.core.Version("1.0.0")
FILE_FORMAT = "array_record"
READ_CHUNK = 256

LIST_FILES_INSTRUCTIONS = """
Alternatively (config `list_files`), `manual_dir` holds the list files `train.txt`,
`test.txt` (the query set) and `database.txt`, one `relative/path.jpg 0 1 0 ...` per line,
with the images at those paths relative to `manual_dir` (or to the `image_root` option).
"""


@dataclasses.dataclass(eq=False)
class HashingConfig(tfds.core.BuilderConfig):
  """How the splits are made.

  Attributes:
    seed: seeds the protocol's draws (ignored for list files).
    from_list_files: split by released list files instead of the protocol.
    options: keyword arguments for the protocol builder (e.g. ``query_per_class``) or
      for ``build_list_files`` (e.g. ``image_root``, ``strip_prefix``).
  """
  seed: int = 0
  from_list_files: bool = False
  options: dict[str, Any] = dataclasses.field(default_factory=dict)


def config_name(seed: int = 0, from_list_files: bool = False, **options: Any) -> str:
  """``protocol_seed<seed>`` or ``list_files``, plus ``_<digest>`` of any ``options``.

  Different options get different names, so prepared data is never reused for another
  split recipe.
  """
  name = "list_files" if from_list_files else f"protocol_seed{int(seed)}"
  if options:
    text = json.dumps(jsonable(options), sort_keys=True)
    name += "_" + hashlib.blake2b(text.encode("utf-8"), digest_size=4).hexdigest()
  return name


def make_config(seed: int = 0, from_list_files: bool = False, name: str = "",
                **options: Any) -> HashingConfig:
  """A config named by ``config_name`` unless ``name`` is given."""
  default = config_name(seed, from_list_files, **options)
  return HashingConfig(name=name or default, version=VERSION, seed=int(seed),
                       from_list_files=bool(from_list_files), options=dict(options),
                       description=("splits from list files" if from_list_files else
                                    f"SPEC §6 protocol, seed {int(seed)}"))


class _HashingBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared body: the subclasses name the dataset and its protocol function."""

  VERSION = VERSION
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [make_config(seed=0), make_config(from_list_files=True)]
  DESCRIPTION = ""
  # Set by each dataset: its protocol, ``(manual_dir, *, seed, **options) -> ImageDataset``.
  PROTOCOL: Callable[..., ImageDataset]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),
            "label": tfds.features.Tensor(shape=(None,), dtype=np.float32),
            "id": np.int64,
            "path": tfds.features.Text()}),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True)

  def _build_listing(self, manual_dir: str) -> ImageDataset:
    config: HashingConfig = self.builder_config
    if config.from_list_files:
      return build_list_files(manual_dir, name=self.name, **config.options)
    return self.PROTOCOL(manual_dir, seed=config.seed, **config.options)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    dataset = self._build_listing(os.fspath(dl_manager.manual_dir))
    self.info.metadata["class_names"] = list(dataset.class_names)
    self.info.metadata["stats"] = jsonable(dataset.stats)
    return {split: self._generate_examples(dataset, split) for split in SPLITS}

  def _generate_examples(self, dataset: ImageDataset, split: str
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    listing = dataset.splits[split]
    for i, path in enumerate(listing.paths):
      file_path = os.path.join(dataset.root, path)
      try:
        with open(file_path, "rb") as f:
          image = f.read()
      except OSError as e:
        raise ValueError(f"{file_path}: cannot read the image listed for the {split} "
                         f"split ({e})") from e
      yield f"{i:010d}", {"image": image, "label": listing.labels[i].astype(np.float32),
                          "id": int(listing.ids[i]), "path": path}


class NusWide21(_HashingBuilder):
  """NUS-WIDE, 21 most frequent concepts (SPEC §6)."""

  name = "nus_wide21"
  DESCRIPTION = "NUS-WIDE-21 for deep hashing: 21 most frequent concepts, multi-label."
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
`manual_dir` must hold the NUS-WIDE release of the NUS Lab for Media Search
(https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html):
`ImageList/Imagelist.txt`, `Concepts81.txt`, `Groundtruth/AllLabels/Labels_<concept>.txt`
(81 files), and the Flickr images as `Flickr/<concept folder>/<file>.jpg` (the images are
distributed by the NUS lab on request or fetched from Flickr by their URLs).
""" + LIST_FILES_INSTRUCTIONS
  PROTOCOL = staticmethod(build_nus_wide21)


class CocoHashing(_HashingBuilder):
  """MS-COCO 2014, 80 categories (SPEC §6)."""

  name = "coco_hashing"
  DESCRIPTION = "MS-COCO 2014 for deep hashing: 80 categories, multi-label."
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
`manual_dir` must hold the MS-COCO 2014 release from https://cocodataset.org/#download:
`train2014/` and `val2014/` (the "2014 Train images" and "2014 Val images" archives,
unpacked) and `annotations/instances_train2014.json`, `annotations/instances_val2014.json`
(from "2014 Train/Val annotations").
""" + LIST_FILES_INSTRUCTIONS
  PROTOCOL = staticmethod(build_coco)


class Imagenet100Hashing(_HashingBuilder):
  """ImageNet-100: 100 ILSVRC classes, single label (SPEC §6)."""

  name = "imagenet100_hashing"
  DESCRIPTION = "ImageNet-100 for deep hashing: 100 ILSVRC2012 classes, single label."
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
`manual_dir` must hold the ILSVRC2012 training images from https://image-net.org
(download page, "Training images (Task 1 & 2)", after registering), unpacked as
`train/<wnid>/<file>.JPEG`, one folder per class.
""" + LIST_FILES_INSTRUCTIONS
  PROTOCOL = staticmethod(build_imagenet100)


BUILDERS = {b.name: b for b in (NusWide21, CocoHashing, Imagenet100Hashing)}




def prepare(name: str, manual_dir: str, data_dir: str, *, seed: int = 0,
            from_list_files: bool = False, **options: Any) -> tfds.core.DatasetBuilder:
  """Prepares builder ``name`` (see ``BUILDERS``) from ``manual_dir`` into ``data_dir``.

  The config is named by ``config_name(seed, from_list_files, **options)``; read it back
  with ``read_prepared(name, data_dir, config=builder.builder_config.name)``.
  """
  if name not in BUILDERS:
    raise ValueError(f"unknown TFDS dataset {name!r}; expected one of {sorted(BUILDERS)}")
  if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
    raise ValueError(f"{manual_dir}: manual_dir is missing or empty; expected:"
                     f"{BUILDERS[name].MANUAL_DOWNLOAD_INSTRUCTIONS}")
  config = make_config(seed, from_list_files, **options)
  listed = {c.name: c for c in BUILDERS[name].BUILDER_CONFIGS}
  if config.name in listed:   # TFDS refuses a custom config named like a listed one
    config = listed[config.name]
  builder = BUILDERS[name](data_dir=data_dir, file_format=FILE_FORMAT, config=config)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir,
                                                   try_download_gcs=False))  # no network
  return builder


class RecordImages:
  """Encoded image bytes of one prepared split, rows in ``order`` (``[n]`` int); ``folder``
  is the prepared version folder (for :meth:`fingerprint`)."""

  def __init__(self, source, order: np.ndarray, folder: str = ""):
    self.source, self.order = source, np.asarray(order, np.int64)
    self.folder = folder

  def fingerprint(self) -> str:
    """The prepared files' names, sizes and modification times, and the row order: what
    ``dseh_jax.run_identity`` hashes instead of every image's bytes."""
    files = sorted(glob.glob(os.path.join(self.folder, "*"))) if self.folder else []
    stats = [(os.path.basename(f), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    order = hashlib.blake2b(self.order.tobytes(), digest_size=16).hexdigest()
    return f"{stats}|{order}"

  def __len__(self) -> int:
    return int(self.order.shape[0])

  def __getitem__(self, i: int) -> bytes:
    return self.source[int(self.order[i])]["image"]

  def describe(self, i: int) -> str:
    """How decoding errors name row ``i``: its stored path and id."""
    record = self.source[int(self.order[i])]
    path = record["path"]
    path = path.decode("utf-8", "replace") if isinstance(path, bytes) else str(path)
    return f"{path} (id {int(record['id'])}, prepared record {int(self.order[i])})"


def prepared_dir(name: str, data_dir: str, config: str) -> str:
  """The newest prepared version folder ``data_dir/name/config/<version>``."""
  pattern = os.path.join(data_dir, name, config, "*", "dataset_info.json")
  found = sorted(glob.glob(pattern),
                 key=lambda p: tfds.core.Version(os.path.basename(os.path.dirname(p))))
  if not found:
    raise ValueError(f"{os.path.join(data_dir, name, config)}: no prepared dataset; run "
                     f"experiments/prepare_dataset.py --dataset {name}")
  return os.path.dirname(found[-1])


def read_prepared(name: str, data_dir: str, *, config: str = "protocol_seed0",
                  image_size: int = 224, resize_to: int = 0,
                  mean: Any = "vgg_f") -> RetrievalData:
  """A prepared dataset as ``RetrievalData`` with ``ImageArray`` inputs over stored bytes.

  Reads every record once to collect labels and ids (the images stay encoded); rows are
  ordered by id within each split.

  Args:
    name: ``nus_wide21``, ``coco_hashing`` or ``imagenet100_hashing``.
    data_dir: the TFDS data folder given to ``prepare``.
    config: the builder config name (``protocol_seed<seed>`` or ``list_files``).
    image_size: see ``dseh_jax.data.listing.to_retrieval_data``.
    resize_to: idem.
    mean: idem.
  """
  from dseh_jax.input_pipeline import ImageArray  # pylint: disable=import-outside-toplevel
  folder = prepared_dir(name, data_dir, config)
  builder = tfds.builder_from_directory(folder)
  sources = builder.as_data_source()
  mean_rgb = resolve_mean(mean)
  splits = {}
  for split in SPLITS:
    source = sources[split]
    n = len(source)
    ids = np.zeros(n, np.int64)
    labels = []
    for start in range(0, n, READ_CHUNK):
      rows = source.__getitems__(list(range(start, min(n, start + READ_CHUNK))))
      ids[start:start + len(rows)] = [r["id"] for r in rows]
      labels += [np.asarray(r["label"], np.float32) for r in rows]
    order = np.argsort(ids, kind="stable")
    inputs = ImageArray(RecordImages(source, order, folder), image_size=int(image_size),
                        resize_to=int(resize_to), mean=mean_rgb)
    stacked = np.stack(labels) if labels else np.zeros((0, 0), np.float32)
    splits[split] = Split(inputs, stacked[order], ids[order])
  metadata = builder.info.metadata or {}
  width = splits["train"].labels.shape[1]
  class_names = tuple(metadata.get("class_names") or (str(k) for k in range(width)))
  stats = dict(metadata.get("stats") or {})
  stats["prepared_dir"] = folder
  return RetrievalData(name, splits["train"], splits["query"], splits["database"],
                       class_names, stats=stats).validate()
