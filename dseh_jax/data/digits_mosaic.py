"""The embedded default dataset: multi-label mosaics of scikit-learn's digits.

Every mosaic is a ``grid x grid`` arrangement of ``cell_size x cell_size`` cells.
Some cells hold one of the 1,797 real 8x8 handwritten digits that ship inside
scikit-learn (``sklearn.datasets.load_digits``, no download); the others are blank.
The label of a mosaic is the multi-hot set of digit classes it shows.

The source digits are cut into three disjoint pools (query, train, retrieval),
stratified by class, so a query mosaic never shares a source image with a train
or retrieval mosaic. Everything flows from ``np.random.default_rng(seed)``: the
same arguments give bit-identical arrays.
"""
from __future__ import annotations


import numpy as np

from dseh_jax import atomic_io
from dseh_jax.data.splits import RetrievalData, Split

NUM_CLASSES = 10
CLASS_NAMES = tuple(str(c) for c in range(NUM_CLASSES))
SOURCE_MAX = 16.0  # load_digits pixel values lie in 0..16.
POOL_FRACTIONS = (0.2, 0.4, 0.4)  # query, train, retrieval.


def load_source_digits() -> tuple[np.ndarray, np.ndarray]:
  """Loads the scikit-learn digits (bundled with the package, never downloaded).

  Returns:
    images: ``[1797, 8, 8]`` float32 in [0, 1].
    targets: ``[1797]`` int64 classes in 0..9.
  """
  from sklearn.datasets import load_digits
  digits = load_digits()
  images = (np.asarray(digits.images, np.float64) / SOURCE_MAX).astype(np.float32)
  targets = np.asarray(digits.target, np.int64)
  return images, targets


def split_source_pools(targets: np.ndarray, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Cuts the source indices into disjoint query / train / retrieval pools.

  Args:
    targets: ``[m]`` int classes of the source images.
    rng: shuffles the sources before the class-stratified cut.

  Returns:
    Three int64 index arrays into ``targets`` (query, train, retrieval); together
    they cover every source exactly once and each holds every class present.
  """
  perm = rng.permutation(targets.shape[0])
  pools: tuple[list[np.ndarray], ...] = ([], [], [])
  for c in np.unique(targets):
    members = perm[targets[perm] == c]
    n = members.shape[0]
    n_query = max(1, int(round(POOL_FRACTIONS[0] * n)))
    n_train = max(1, int(round(POOL_FRACTIONS[1] * n)))
    if n_query + n_train >= n:
      raise ValueError(f"class {c} has only {n} source images; too few to split")
    pools[0].append(members[:n_query])
    pools[1].append(members[n_query:n_query + n_train])
    pools[2].append(members[n_query + n_train:])
  # Keep the shuffled order within each pool rather than grouping by class.
  rank = np.empty_like(perm)
  rank[perm] = np.arange(perm.shape[0])
  out = []
  for parts in pools:
    idx = np.concatenate(parts)
    out.append(idx[np.argsort(rank[idx], kind="stable")].astype(np.int64))
  return out[0], out[1], out[2]


def resize_cells(images: np.ndarray, cell_size: int) -> np.ndarray:
  """Nearest-neighbour resize of ``[m, h, w]`` images to ``[m, cell_size, cell_size]``."""
  m, h, w = images.shape
  if (h, w) == (cell_size, cell_size):
    return images
  rows = (np.arange(cell_size) * h) // cell_size
  cols = (np.arange(cell_size) * w) // cell_size
  return images[:, rows[:, None], cols[None, :]].reshape(m, cell_size, cell_size)


def make_mosaics(cells: np.ndarray, targets: np.ndarray, pool: np.ndarray, n: int,
                 grid: int, min_k: int, max_k: int, rng: np.random.Generator,
                 num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
  """Builds ``n`` mosaics whose cells come only from ``pool``.

  Args:
    cells: ``[m, s, s]`` (grey) or ``[m, s, s, C]`` float32 source cells.
    targets: ``[m]`` int classes of the source cells.
    pool: ``[p]`` indices into ``cells`` that this split may use.
    n: number of mosaics.
    grid: mosaics are ``grid x grid`` cells.
    min_k: fewest filled cells per mosaic.
    max_k: most filled cells per mosaic (at most ``grid * grid``).
    rng: the only source of randomness.
    num_classes: width of the multi-hot labels.

  Returns:
    inputs: ``[n, grid*s, grid*s, C]`` float32 (``C = 1`` for grey cells); empty cells are 0.
    labels: ``[n, num_classes]`` float32 multi-hot.
  """
  if cells.ndim == 3:
    cells = cells[..., None]
  g2 = grid * grid
  s, channels = cells.shape[1], cells.shape[3]
  k = rng.integers(min_k, max_k + 1, size=n)                       # [n]
  # A uniformly random permutation of the cells per mosaic; the cells ranked
  # below k are filled, i.e. k distinct cells chosen uniformly.
  rank = np.argsort(rng.random((n, g2)), axis=1)                    # [n, g2]
  occupied = rank < k[:, None]                                      # [n, g2]
  source = pool[rng.integers(0, pool.shape[0], size=(n, g2))]       # [n, g2]

  tiles = cells[source] * occupied[:, :, None, None, None].astype(np.float32)
  inputs = tiles.reshape(n, grid, grid, s, s, channels).transpose(0, 1, 3, 2, 4, 5)
  inputs = np.ascontiguousarray(inputs.reshape(n, grid * s, grid * s, channels), np.float32)

  labels = np.zeros((n, num_classes), np.float32)
  row, col = np.nonzero(occupied)
  labels[row, targets[source[row, col]]] = 1.0
  return inputs, labels


def build_digits_mosaic(*, seed: int = 0, grid: int = 2, min_digits: int = 1,
                        max_digits: int = 4, num_query: int = 500,
                        num_train: int = 2000, num_retrieval: int = 4000,
                        single_label: bool = False,
                        database_includes_train: bool = True,
                        cell_size: int = 8) -> RetrievalData:
  """Builds the digits-mosaic retrieval dataset deterministically from ``seed``.

  Args:
    seed: seeds the one ``np.random.default_rng`` everything is drawn from.
    grid: mosaics are ``grid x grid`` cells.
    min_digits: fewest digits per mosaic (ignored when ``single_label``).
    max_digits: most digits per mosaic, capped at ``grid * grid`` (ignored when
      ``single_label``).
    num_query: number of query mosaics.
    num_train: number of train mosaics.
    num_retrieval: number of retrieval mosaics (the database besides train).
    single_label: every mosaic holds exactly one digit, so labels are one-hot.
    database_includes_train: the database is train then retrieval mosaics;
      otherwise the retrieval mosaics only.
    cell_size: side of one cell in pixels (digits are nearest-neighbour resized).

  Returns:
    A validated ``RetrievalData`` with inputs ``[n, grid*cell_size,
    grid*cell_size, 1]`` float32 in [0, 1], labels ``[n, 10]`` float32 and int64
    ids that are unique per mosaic (train mosaics keep their id in the database).
  """
  for name, value in (("grid", grid), ("min_digits", min_digits),
                      ("max_digits", max_digits), ("num_query", num_query),
                      ("num_train", num_train), ("num_retrieval", num_retrieval),
                      ("cell_size", cell_size)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f"{name} must be an int; got {value!r}")
    if value < 1:
      raise ValueError(f"{name} must be >= 1; got {value}")
  if max_digits < min_digits:
    raise ValueError(f"max_digits ({max_digits}) must be >= min_digits ({min_digits})")
  g2 = grid * grid
  if single_label:
    min_k = max_k = 1
  else:
    if min_digits > g2:
      raise ValueError(f"min_digits ({min_digits}) exceeds the {g2} cells of a "
                       f"{grid}x{grid} grid")
    min_k, max_k = int(min_digits), int(min(max_digits, g2))

  images, targets = load_source_digits()
  cells = resize_cells(images, int(cell_size))

  rng = np.random.default_rng(seed)
  query_pool, train_pool, retrieval_pool = split_source_pools(targets, rng)
  query_rng, train_rng, retrieval_rng = rng.spawn(3)

  grid = int(grid)
  q_x, q_y = make_mosaics(cells, targets, query_pool, int(num_query), grid,
                          min_k, max_k, query_rng)
  t_x, t_y = make_mosaics(cells, targets, train_pool, int(num_train), grid,
                          min_k, max_k, train_rng)
  r_x, r_y = make_mosaics(cells, targets, retrieval_pool, int(num_retrieval), grid,
                          min_k, max_k, retrieval_rng)
  q_ids = np.arange(num_query, dtype=np.int64)
  t_ids = np.arange(num_query, num_query + num_train, dtype=np.int64)
  r_ids = np.arange(num_query + num_train, num_query + num_train + num_retrieval,
                    dtype=np.int64)

  train = Split(t_x, t_y, t_ids)
  query = Split(q_x, q_y, q_ids)
  retrieval = Split(r_x, r_y, r_ids)
  if database_includes_train:
    database = Split(np.concatenate([t_x, r_x]), np.concatenate([t_y, r_y]),
                     np.concatenate([t_ids, r_ids]))
  else:
    database = retrieval
  name = "digits_single" if single_label else "digits_mosaic"
  return RetrievalData(name=name, train=train, query=query, database=database,
                       class_names=CLASS_NAMES).validate()


def save_preview(data: RetrievalData, path: str, n: int = 32) -> None:
  """Writes a PNG grid of the first ``n`` train mosaics titled by their label sets.

  The file is written atomically (:func:`dseh_jax.atomic_io.save_figure`).

  Args:
    data: the dataset; ``data.train.inputs`` is ``[N, H, W, 1]``.
    path: where the PNG goes.
    n: how many train mosaics to show (at most ``len(data.train)``).
  """
  # Agg canvas directly: no pyplot, so no global backend switch.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  if n < 1:
    raise ValueError(f"n must be >= 1; got {n}")
  n = min(int(n), len(data.train))
  if n < 1:
    raise ValueError("the train split is empty; nothing to preview")
  cols = min(8, n)
  rows = -(-n // cols)
  fig = Figure(figsize=(1.4 * cols, 1.6 * rows))
  FigureCanvasAgg(fig)
  for i in range(n):
    ax = fig.add_subplot(rows, cols, i + 1)
    image = data.train.inputs[i]
    image = image[..., 0] if image.shape[-1] == 1 else image
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    present = np.flatnonzero(data.train.labels[i] > 0)
    ax.set_title("{" + ",".join(data.class_names[c] for c in present) + "}",
                 fontsize=8)
    ax.set_axis_off()
  fig.tight_layout()

  atomic_io.save_figure(fig, path)
