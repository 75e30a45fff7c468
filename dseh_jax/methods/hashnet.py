"""HashNet (Cao, Long, Wang, Yu, ICCV 2017): class-balanced pairwise likelihood of
``tanh(β z)`` against the bank, with β raised during training (continuation;
:func:`dseh_jax.baseline_losses.hashnet_loss`, :func:`~dseh_jax.baseline_losses.hashnet_beta`).

The bank keeps the pre-activations ``z``; β at step ``t`` is ``(1 + γ t)^p`` with ``t``
rounded down to a multiple of ``step_size`` (the authors' code). ``config.hashnet``:
``gamma``, ``power``, ``step_size``, ``alpha``, ``reduction``, ``outputs`` (``"centered"``:
:mod:`dseh_jax.methods.pairwise`) and ``lr_scale`` (times the recipe's learning rates,
:func:`dseh_jax.networks.method_lr_scale`).

``alpha`` = 3 by default, chosen on the validation split of the embedded digits at 32 bits
(tie-aware validation MAP .498 / .619 / .650 / .634 for α = 10/K = .3125 / 1 / 3 / 10,
2026-12-07), and confirmed on a validation split of CIFAR-10 pixels in feature mode (.263 /
.306 / .178 for α = 1 / 3 / 10, centred; .141–.144 with raw outputs): with the authors'
``10 / K`` (``alpha = 0``) the likelihood stays near
``2 log 2`` on a network trained from scratch, as ``Θ`` is too small to separate the pairs.

``lr_scale`` = 1 (the recipe's rates). The validation split of CIFAR-10 pixels prefers 0.3
(tie-aware .393 against .306 at 1, the training points as database; .201 against .170 with a
held-out database), and so do the digits (.656 against .650), but CIFAR-10's queries score
.1697 at 0.3 against .1826 at 1 (2026-12-08; docs/methods.md, "Comparison table").
"""
from dseh_jax import baseline_losses
from dseh_jax.methods.base import configure_section
from dseh_jax.methods.pairwise import PairwiseBankMethod


class HashNet(PairwiseBankMethod):
  name = "hashnet"
  loss = staticmethod(baseline_losses.hashnet_loss)

  def loss_kwargs(self, settings, state):
    beta = baseline_losses.hashnet_beta(state.step + 1, gamma=settings["gamma"],
                                        power=settings["power"],
                                        step_size=settings["step_size"])
    return {"beta": beta, "alpha": settings["alpha"] or None,
            "reduction": settings["reduction"]}


METHOD = HashNet()


def configure(config):
  return configure_section(config, "hashnet", {"gamma": 0.005, "power": 0.5,
                                               "step_size": 200, "alpha": 3.0,
                                               "reduction": "mean", "outputs": "centered",
                                               "lr_scale": 1.0})
