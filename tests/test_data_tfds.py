"""TFDS builders (SPEC §6): prepare without TensorFlow, read back as RetrievalData."""
import json
import os

import numpy as np
import pytest

import fixtures_datasets as fx
from dseh_jax.data import tfds_builders
from dseh_jax.data.listing import to_retrieval_data
from dseh_jax.data.nus_wide import build_nus_wide21
from dseh_jax.data.registry import load_dataset

OPTIONS = {"num_classes": 4, "query_per_class": 2, "train_per_class": 3}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  manual = str(tmp_path_factory.mktemp("manual"))
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  fx.write_nus_wide(manual, np.random.default_rng(0), num_images=60, tie=False)
  builder = tfds_builders.prepare("nus_wide21", manual, data_dir, seed=2, **OPTIONS)
  config = builder.builder_config.name
  assert config == tfds_builders.config_name(2, **OPTIONS) and config.startswith(
      "protocol_seed2_")
  return manual, data_dir, config


def test_round_trip_matches_the_direct_loader(prepared):
  manual, data_dir, config = prepared
  back = tfds_builders.read_prepared("nus_wide21", data_dir, config=config,
                                     image_size=16, mean="none")
  direct = build_nus_wide21(manual, seed=2, **OPTIONS)
  direct_data = to_retrieval_data(direct, image_size=16, mean="none")
  assert back.class_names == direct.class_names
  for split in ("train", "query", "database"):
    got, want = getattr(back, split), direct.splits[split]
    order = np.argsort(want.ids)
    np.testing.assert_array_equal(got.ids, want.ids[order])   # read back sorted by id
    np.testing.assert_array_equal(got.labels, want.labels[order])
    rows = np.array([0, len(got) - 1])
    np.testing.assert_array_equal(got.inputs[rows],
                                  getattr(direct_data, split).inputs[order[rows]])
  assert back.stats["overlaps"] == direct.stats["overlaps"]
  assert back.stats["images_without_label_removed"] == \
      direct.stats["images_without_label_removed"]


def test_stored_examples_hold_raw_bytes_and_paths(prepared):
  manual, data_dir, config = prepared
  import tensorflow_datasets as tfds
  folder = tfds_builders.prepared_dir("nus_wide21", data_dir, config)
  source = tfds.builder_from_directory(folder).as_data_source()["query"]
  record = source[0]
  path = record["path"].decode() if isinstance(record["path"], bytes) else record["path"]
  with open(os.path.join(manual, path), "rb") as f:
    assert record["image"] == f.read()
  assert record["label"].dtype == np.float32 and record["label"].shape == (4,)
  with open(os.path.join(folder, "dataset_info.json")) as f:
    info = json.load(f)
  assert "array_record" in json.dumps(info)


def test_registry_reads_prepared_data(prepared):
  _, data_dir, config = prepared
  data = load_dataset({"name": "tfds", "image_size": 8, "kwargs": {
      "builder": "nus_wide21", "data_dir": data_dir, "config": config}})
  assert data.query.inputs.shape == (8, 8, 8, 3)
  with pytest.raises(ValueError, match="no prepared dataset; run experiments/prepare"):
    load_dataset({"name": "tfds", "kwargs": {"builder": "nus_wide21", "data_dir": data_dir,
                                             "config": "protocol_seed7"}})


def test_list_files_config(tmp_path):
  want = fx.write_list_files(str(tmp_path / "manual"), np.random.default_rng(1), c=3)
  tfds_builders.prepare("coco_hashing", str(tmp_path / "manual"), str(tmp_path / "tfds"),
                        from_list_files=True)
  back = tfds_builders.read_prepared("coco_hashing", str(tmp_path / "tfds"),
                                     config="list_files", image_size=8)
  for split, (paths, labels) in want.items():
    got = getattr(back, split)
    assert len(got) == len(paths)
    assert sorted(map(tuple, got.labels.tolist())) == sorted(map(tuple, labels.tolist()))
  assert back.stats["overlaps"]["query&database"] == 3


def test_manual_instructions_name_the_expected_files():
  assert "Imagelist.txt" in tfds_builders.NusWide21.MANUAL_DOWNLOAD_INSTRUCTIONS
  assert "instances_train2014.json" in tfds_builders.CocoHashing.MANUAL_DOWNLOAD_INSTRUCTIONS
  assert "train/<wnid>" in tfds_builders.Imagenet100Hashing.MANUAL_DOWNLOAD_INSTRUCTIONS
  with pytest.raises(ValueError, match="unknown TFDS dataset 'cifar'"):
    tfds_builders.prepare("cifar", "a", "b")


def test_prepared_images_have_a_stable_cheap_fingerprint(tmp_path):
  """The run identity fingerprints prepared records by their files, not every image's bytes;
  the same folder gives the same digest in another process."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  folder = tmp_path / "prepared"
  folder.mkdir()
  (folder / "x.array_record-00000-of-00001").write_bytes(b"abc")
  order = np.array([2, 0, 1])
  code = ("import numpy as np; from dseh_jax.data.tfds_builders import RecordImages; "
          f"print(RecordImages(None, np.array([2, 0, 1]), {str(folder)!r}).fingerprint())")
  runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout for _ in range(2)}
  assert len(runs) == 1
  here = tfds_builders.RecordImages(None, order, str(folder)).fingerprint()
  assert runs == {here + "\n"}
  (folder / "x.array_record-00000-of-00001").write_bytes(b"abcd")
  assert tfds_builders.RecordImages(None, order, str(folder)).fingerprint() != here
