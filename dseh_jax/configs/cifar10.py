"""CIFAR-10 (SPEC §6, not in the paper): 1,000 query, 5,000 train, 59,000 database.

The 32×32 images stay in memory as ``pixel / 255`` (0..1) with no mean subtracted
(``data.image_size`` / ``data.mean`` do not apply); the backbone is the CNN-F shape scaled
to small inputs, trained from scratch.
"""
from __future__ import annotations

from dseh_jax.configs.base import apply_choices, get_base_config
from dseh_jax.configs.compose import compose


def get_config(arg: str | None = None):
  """``arg``: ``choices=…,method=…,variant=…`` (``dseh_jax.configs.compose``)."""
  return compose(dataset_config, arg)


def dataset_config(choices: str = "recipe"):
  c = get_base_config()
  c.data.name = "cifar10"
  c.data.kwargs.data_dir = ""               # python batches or folders (data_dir=…)
  c.labnet.epochs_per_round = (6, 4, 2)
  c.imgnet.backbone = "mini_cnnf"           # from scratch on 32×32 images
  c.imgnet.random_flip = True               # a flipped CIFAR image keeps its class
  c.eval.top_k = 1000                       # MAP@1000, common for CIFAR-10
  apply_choices(c, choices, labnet_s=0.999, photos=True)   # code: s = 0.999
  c.imgnet.epochs_per_round = (30, 30, 30)  # every choice: 90 epochs from scratch fit on CPU
  c.imgnet.optimizer.lr_mult_pretrained = 1.0   # nothing pretrained: one rate
  c.imgnet.optimizer.lr_mult_new = 1.0
  return c
