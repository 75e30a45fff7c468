"""ImageNet-100 from an ILSVRC train tree (SPEC §6): class draw, one-hot labels, ids."""
import os

import numpy as np
import pytest

import fixtures_datasets as fx
from dseh_jax.data.imagenet import build_imagenet100


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("ilsvrc"))
  return root, fx.write_imagenet(root, np.random.default_rng(0))


def test_classes_labels_ids_and_splits(imagenet):
  root, fix = imagenet
  ds = build_imagenet100(root, num_classes=4, query_per_class=2, train_per_class=3, seed=0)
  assert len(ds.class_names) == 4 and set(ds.class_names) <= set(fix["wnids"])
  assert list(ds.class_names) == sorted(ds.class_names)
  assert ds.stats["classes_available"] == 7 and ds.stats["images_used"] == 4 * 9
  for listing in ds.splits.values():
    for path, label, image_id in zip(listing.paths, listing.labels, listing.ids):
      _, wnid, name = path.split("/")
      assert label.sum() == 1 and ds.class_names[int(label.argmax())] == wnid
      want = fix["wnids"].index(wnid) * 2 ** 20 + fix["files"][wnid].index(name)
      assert image_id == want
      assert os.path.isfile(os.path.join(root, path))
  for split, per_class in (("query", 2), ("train", 3)):
    np.testing.assert_array_equal(ds.splits[split].labels.sum(0), [per_class] * 4)
  q, t, db = (set(ds.splits[s].ids.tolist()) for s in ("query", "train", "database"))
  assert not q & t and not q & db and t <= db and len(db) == 4 * 9 - 4 * 2
  assert ds.stats["overlaps"]["train&database"] == 12


def test_seeded_class_draw(imagenet):
  root, _ = imagenet
  draws = {build_imagenet100(root, num_classes=3, query_per_class=1, train_per_class=1,
                             seed=s).class_names for s in range(6)}
  assert len(draws) > 1
  a = build_imagenet100(root, num_classes=3, query_per_class=1, train_per_class=1, seed=4)
  b = build_imagenet100(root, num_classes=3, query_per_class=1, train_per_class=1, seed=4)
  assert a.class_names == b.class_names
  np.testing.assert_array_equal(a.splits["query"].ids, b.splits["query"].ids)


def test_class_list_file(imagenet, tmp_path):
  root, fix = imagenet
  chosen = [fix["wnids"][5], fix["wnids"][1]]
  (tmp_path / "classes.txt").write_text("\n".join(chosen) + "\n")
  ds = build_imagenet100(root, class_list_file=str(tmp_path / "classes.txt"),
                         query_per_class=2, train_per_class=2, seed=0)
  assert ds.class_names == tuple(sorted(chosen))
  (tmp_path / "bad.txt").write_text(f"{chosen[0]}\nn99999999\n")
  with pytest.raises(ValueError, match=r"bad.txt: line 2: class 'n99999999' has no folder"):
    build_imagenet100(root, class_list_file=str(tmp_path / "bad.txt"))


def test_errors(tmp_path):
  with pytest.raises(ValueError, match="train: folder not found"):
    build_imagenet100(str(tmp_path))
  fx.write_imagenet(str(tmp_path), np.random.default_rng(1), num_classes=3, per_class=2)
  with pytest.raises(ValueError, match="num_classes=5; the train folder has 3 classes"):
    build_imagenet100(str(tmp_path), num_classes=5)
  with pytest.raises(ValueError, match="has 1 images left for the train split; 2 per class"):
    build_imagenet100(str(tmp_path), num_classes=3, query_per_class=1, train_per_class=2)
