"""Retrieval evaluation (SPEC §6, §7): binary codes, Hamming ranking metrics, curves.

``codes``: ``sign``, bit packing, Hamming distances. ``ranking``: MAP / MAP@k with an
explicit tie policy, P@N, precision–recall by Hamming radius, all in one pass.
"""
from dseh_jax.evaluation.codes import (as_packed, binarize, bit_balance, distinct_codes,
                                       hamming_distance, pack_codes, pack_labels,
                                       packed_to_bytes, unpack_codes)
from dseh_jax.evaluation.ranking import (DEFAULT_TOP_K, TIE_POLICIES,
                                         ZERO_RELEVANT_POLICIES, RetrievalReport,
                                         evaluate_retrieval, mean_average_precision,
                                         tie_aware_average_precision)
