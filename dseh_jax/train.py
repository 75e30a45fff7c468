"""DSEH's alternating trainer (SPEC §5, Algorithm 1) under its historical names.

The trainer itself is generic (:class:`dseh_jax.trainer.Trainer`, any method of
:mod:`dseh_jax.methods`); DSEH's plan, hand-offs and diagnostics are in
:mod:`dseh_jax.methods.dseh`, its networks in :mod:`dseh_jax.networks`.
"""
from dseh_jax.methods.dseh import make_plan
from dseh_jax.trainer import CollapseError, RunResult, Trainer

DSEHTrainer = Trainer          # a DSEH config (config.method = "dseh") trains DSEH

__all__ = ["CollapseError", "DSEHTrainer", "RunResult", "Trainer", "make_plan"]
