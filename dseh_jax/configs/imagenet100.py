"""ImageNet-100, single label (SPEC §6): 50/class query, 100/class train."""
from __future__ import annotations

from dseh_jax.configs.base import apply_choices, get_base_config
from dseh_jax.configs.compose import compose


def get_config(arg: str | None = None):
  """``arg``: ``choices=…,method=…,variant=…`` (``dseh_jax.configs.compose``)."""
  return compose(dataset_config, arg)


def dataset_config(choices: str = "recipe"):
  c = get_base_config()
  c.data.name = "imagenet100"
  c.data.kwargs.data_dir = ""               # raw layout: --config.data.kwargs.data_dir=…
  c.data.image_size = 224                   # SPEC §4
  c.data.resize_to = 0                      # 0: resize straight to image_size
  c.data.mean = "vgg_f"                     # "vgg_f", "none" or three RGB numbers
  c.labnet.epochs_per_round = (4, 3, 2)      # code
  c.labnet.loss.s = 5.0                      # paper: S ∈ {0, 5}; code s = 5
  c.imgnet.loss.s = 5.0                      # paper: S ∈ {0, 5}; code 0.999
  c.imgnet.epochs_per_round = (40, 40, 40)   # code
  c.imgnet.optimizer.lr = 10 ** -4.5         # code
  c.eval.top_k = 1000                        # HashNet protocol
  apply_choices(c, choices, labnet_s=5.0, one_rate=True, photos=True,
                labnet_weights={"j1": 0.0, "j2": 1.0, "j3": 1.0, "j4": 0.1})
  return c
