"""DPSH (Li, Wang, Kang, IJCAI 2016): pairwise likelihood of the batch against the bank of
all training outputs + η × quantisation (:func:`dseh_jax.baseline_losses.dpsh_loss`).

``u`` is the hash layer's linear output; the codes are ``sign(u)``. ``config.dpsh``:
``eta`` and ``reduction`` (``"paper"``: the paper's sums over the bank per batch point, so
its η = 10 keeps its weight), ``outputs`` (``"centered"``: :mod:`dseh_jax.methods.pairwise`).
"""
from dseh_jax import baseline_losses
from dseh_jax.methods.base import configure_section
from dseh_jax.methods.pairwise import PairwiseBankMethod


class DPSH(PairwiseBankMethod):
  name = "dpsh"
  loss = staticmethod(baseline_losses.dpsh_loss)


METHOD = DPSH()


def configure(config):
  return configure_section(config, "dpsh", {"eta": 10.0, "reduction": "paper",
                                            "outputs": "centered"})
