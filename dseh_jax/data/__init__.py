"""Datasets for hashing-based retrieval: the split container and the loaders."""
from dseh_jax.data.splits import RetrievalData, Split, validate_split

__all__ = ["RetrievalData", "Split", "validate_split"]
