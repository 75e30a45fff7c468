"""dseh_jax: Deep Joint Semantic-Embedding Hashing (DSEH, IJCAI 2018) in JAX/Flax.

Modules: ``models`` (LabNet, ImgNet, CNN-F), ``losses``, ``optim``, ``train_steps``
(pmap-able steps), ``train`` (the alternating trainer), ``evaluation``, ``data``,
``configs``.
"""
__version__ = "0.1.0"

from dseh_jax import host_memory as _host_memory

_host_memory.keep_heap_slack()     # before JAX's first computation (see dseh_jax.host_memory)
