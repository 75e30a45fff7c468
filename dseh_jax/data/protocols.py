"""Protocol split builders (SPEC §6), pure numpy and seeded.

Everything here works on a ``[n, c]`` 0/1 label matrix over a dataset's usable images
and returns row indices, so the same code serves the raw-layout loaders and the TFDS
builders.

Per-class sampling for multi-label sets (NUS-WIDE-21; ImageNet-100 is the single-label
case). The query set is drawn first, then the train set from what is left:

1. visit the classes in an order drawn from the generator (``rng.permutation(c)``);
2. for class ``k``, draw ``per_class`` images uniformly without replacement among the
   images that carry label ``k`` and are not taken yet (by this split or by an earlier
   one), and mark them taken.

So every split holds exactly ``c * per_class`` distinct images, each class contributes
``per_class`` images that carry it (an image drawn for one class may carry others too),
and query and train are disjoint. A class with too few untaken images is an error.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SplitIndices:
  """Row indices (int64) into the usable images for every split of SPEC §6."""
  query: np.ndarray
  train: np.ndarray
  database: np.ndarray

  def as_dict(self) -> dict[str, np.ndarray]:
    return {"train": self.train, "query": self.query, "database": self.database}


def _check_count(name: str, value: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
    raise ValueError(f"{name} must be an int >= 0; got {value!r}")
  return int(value)


def sample_per_class(labels: np.ndarray, per_class: int, rng: np.random.Generator,
                     taken: np.ndarray, class_names: tuple[str, ...] | None = None,
                     split: str = "split") -> np.ndarray:
  """Draws ``per_class`` untaken images carrying each class (see the module docstring).

  Args:
    labels: ``[n, c]`` 0/1 labels.
    per_class: images drawn for every class.
    rng: the only source of randomness.
    taken: ``[n]`` bool, images that may not be drawn; updated in place.
    class_names: for error messages.
    split: the split being drawn, for error messages.

  Returns:
    ``[c * per_class]`` int64 row indices in drawing order.
  """
  per_class = _check_count(f"{split}_per_class", per_class)
  has = np.asarray(labels) > 0
  chosen = []
  for k in rng.permutation(has.shape[1]):
    candidates = np.flatnonzero(has[:, k] & ~taken)
    if candidates.shape[0] < per_class:
      name = class_names[k] if class_names else str(k)
      raise ValueError(f"class {name!r} has {candidates.shape[0]} images left for the "
                       f"{split} split; {per_class} per class requested")
    pick = rng.choice(candidates, size=per_class, replace=False)
    taken[pick] = True
    chosen.append(pick)
  if not chosen:
    return np.zeros(0, np.int64)
  return np.concatenate(chosen).astype(np.int64)


def per_class_split(labels: np.ndarray, *, query_per_class: int, train_per_class: int,
                    seed: int, database_includes_train: bool = True,
                    class_names: tuple[str, ...] | None = None) -> SplitIndices:
  """NUS-WIDE-21 / ImageNet-100 protocol: per-class query and train, database the rest.

  Args:
    labels: ``[n, c]`` 0/1 labels of the usable images.
    query_per_class: paper 100 (NUS-WIDE) or 50 (ImageNet-100).
    train_per_class: paper 500 (NUS-WIDE) or 100 (ImageNet-100).
    seed: seeds the one ``np.random.default_rng`` all draws come from.
    database_includes_train: the database is every non-query image (the authors' code);
      otherwise every image in neither query nor train.
    class_names: for error messages.

  Returns:
    Disjoint query and train indices in drawing order; database indices ascending.
  """
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  taken = np.zeros(labels.shape[0], bool)
  query = sample_per_class(labels, query_per_class, rng, taken, class_names, "query")
  in_query = taken.copy()
  train = sample_per_class(labels, train_per_class, rng, taken, class_names, "train")
  database = np.flatnonzero(~in_query if database_includes_train else ~taken)
  return SplitIndices(query, train, database.astype(np.int64))


def random_split(num_images: int, *, num_query: int, num_train: int, seed: int,
                 database_includes_train: bool = True) -> SplitIndices:
  """MS-COCO protocol: ``num_query`` and ``num_train`` images at random, database the rest.

  Args:
    num_images: usable (labelled) images.
    num_query: paper 5,000.
    num_train: paper 10,000.
    seed: seeds ``np.random.default_rng``; one permutation, query first then train.
    database_includes_train: database = every non-query image (the authors' code);
      otherwise the images in neither query nor train.

  Returns:
    Disjoint query and train indices in drawing order; database indices ascending.
  """
  num_query = _check_count("num_query", num_query)
  num_train = _check_count("num_train", num_train)
  if num_query + num_train > num_images:
    raise ValueError(f"num_query ({num_query}) + num_train ({num_train}) exceed the "
                     f"{num_images} usable images")
  perm = np.random.default_rng(seed).permutation(num_images).astype(np.int64)
  query, train = perm[:num_query], perm[num_query:num_query + num_train]
  rest = perm[num_query:] if database_includes_train else perm[num_query + num_train:]
  return SplitIndices(query, train, np.sort(rest))


def top_classes(counts: np.ndarray, names: tuple[str, ...], k: int) -> np.ndarray:
  """Indices of the ``k`` most frequent classes; ties go to the name first in sort order.

  Args:
    counts: ``[c]`` images per class.
    names: ``c`` class names.
    k: how many to keep (NUS-WIDE: 21).

  Returns:
    ``[k]`` int64 indices, ascending (the kept classes stay in their listed order).
  """
  counts = np.asarray(counts)
  if not 1 <= k <= counts.shape[0]:
    raise ValueError(f"num_classes={k}; expected 1..{counts.shape[0]}")
  order = sorted(range(counts.shape[0]), key=lambda i: (-int(counts[i]), names[i]))
  return np.sort(np.asarray(order[:k], np.int64))
