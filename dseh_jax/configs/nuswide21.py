"""NUS-WIDE, 21 most frequent concepts (SPEC §6): 2,100 query, 10,500 train, rest database."""
from __future__ import annotations

from dseh_jax.configs.base import apply_choices, get_base_config
from dseh_jax.configs.compose import compose


def get_config(arg: str | None = None):
  """``arg``: ``choices=…,method=…,variant=…`` (``dseh_jax.configs.compose``)."""
  return compose(dataset_config, arg)


def dataset_config(choices: str = "recipe"):
  c = get_base_config()
  c.data.name = "nus_wide21"
  c.data.kwargs.data_dir = ""               # raw layout: --config.data.kwargs.data_dir=…
  c.data.image_size = 224                   # SPEC §4
  c.data.resize_to = 0                      # 0: resize straight to image_size
  c.data.mean = "vgg_f"                     # "vgg_f", "none" or three RGB numbers
  c.labnet.epochs_per_round = (30, 20, 10)   # code
  c.imgnet.epochs_per_round = (40, 40, 40)   # code
  c.imgnet.optimizer.lr = 1e-4               # code
  c.eval.top_k = 5000                        # HashNet protocol, reported next to MAP@all
  # map_l over the whole database every 5th LabNet epoch (and at every round's end): one
  # costs ~1.5 s on NUS-WIDE's 193,734 items, a third of a LabNet epoch on CPU.
  c.eval.labnet_map_every = 5
  apply_choices(c, choices, labnet_s=0.999, photos=True)   # code: s = 0.999
  return c
