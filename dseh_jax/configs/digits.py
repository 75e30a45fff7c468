"""The embedded default: multi-label mosaics of scikit-learn's digits (no download).

Built in well under a second from images that ship inside scikit-learn, so the main command
runs anywhere in minutes. The backbone is the CNN-F shape scaled to 16×16 inputs and trained
from scratch (no pretrained weights exist for it). It is a smoke-scale stand-in for the
real datasets, not a replacement: its numbers are not comparable to the paper's.
"""
from __future__ import annotations

from dseh_jax.configs.base import apply_choices, get_base_config
from dseh_jax.configs.compose import compose


def get_config(arg: str | None = None):
  """``arg``: ``choices=…,method=…,variant=…`` (``dseh_jax.configs.compose``)."""
  return compose(dataset_config, arg)


def dataset_config(choices: str = "recipe"):
  """``choices``: ``"recipe"`` (default), ``"paper"`` or ``"code"`` (README)."""
  c = get_base_config()
  c.data.name = "digits_mosaic"
  c.data.kwargs.seed = 0
  c.labnet.hidden_units = 1024               # smaller than the paper's 4096: 10 labels only
  c.labnet.epochs_per_round = (6, 4, 2)      # shortened code schedule
  c.imgnet.backbone = "mini_cnnf"
  c.imgnet.random_flip = False               # a flipped digit is another symbol
  c.imgnet.optimizer.lr = 1e-3               # from scratch: 10× the code's NUS-WIDE rate
  if choices == "paper":
    for net in (c.labnet, c.imgnet):
      net.optimizer.name = "adam"            # the paper gives no SGD rate to copy
    c.labnet.optimizer.lr = 1e-4
  apply_choices(c, choices, labnet_s=0.999)
  c.imgnet.epochs_per_round = (15, 15, 15)   # short: the main command runs in minutes
  # From scratch, ImgNet must fit LabNet's codes in every round (SPEC §5 hazard): its rate is
  # not cut at new rounds, and every layer gets it (no pretrained layers to protect).
  c.imgnet.optimizer.decay_each_round = False
  c.imgnet.optimizer.lr_mult_pretrained = 1.0
  c.imgnet.optimizer.lr_mult_new = 1.0
  c.eval.top_k = 1000
  return c
