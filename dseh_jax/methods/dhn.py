"""DHN (Zhu, Long, Wang, Cao, AAAI 2016): pairwise cross-entropy of the batch against the
bank + λ × smoothed bimodal-Laplacian quantisation
(:func:`dseh_jax.baseline_losses.dhn_loss`).

``z`` is the hash layer's linear output; the codes are ``sign(z)``. ``config.dhn``:
``lam``, ``theta_scale`` (1: the authors' Caffe layer) and ``reduction`` (``"mean"``, as
Caffe normalises), ``outputs`` (``"centered"``: :mod:`dseh_jax.methods.pairwise`).
"""
from dseh_jax import baseline_losses
from dseh_jax.methods.base import configure_section
from dseh_jax.methods.pairwise import PairwiseBankMethod


class DHN(PairwiseBankMethod):
  name = "dhn"
  loss = staticmethod(baseline_losses.dhn_loss)


METHOD = DHN()


def configure(config):
  return configure_section(config, "dhn", {"lam": 0.1, "theta_scale": 1.0,
                                           "reduction": "mean", "outputs": "centered"})
