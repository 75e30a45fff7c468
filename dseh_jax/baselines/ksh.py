"""KSH: supervised hashing with kernels (Liu, Wang, Ji, Jiang & Chang, CVPR 2012; SPEC §8).

Features: the zero-centred anchor kernel ``K̄ = φ(X) - μ`` (:mod:`kernel`; ``m = 300``
anchors, ``μ [m]`` the mean over all training points). Bit ``k`` is ``sign(k̄(x)ᵀ a_k)``.
On ``l`` labelled points (default ``min(n, 1000)``, drawn from the key; the paper uses
``l = 1000`` or ``2000``), ``S_ij = +1`` when ``i`` and ``j`` share a label, else ``-1``,
and the codes ``H [l, r]`` should fit ``min ‖H Hᵀ - r S‖²_F`` (code inner products
``= r S``). Bits are learned greedily: with the residue ``R_{k-1} = r S - Σ_{t<k} b_t b_tᵀ``
and ``b = sign(K̄ a)``, bit ``k`` maximises ``bᵀ R_{k-1} b``, which is minimising
``‖R_{k-1} - b bᵀ‖²_F = ‖R_{k-1}‖² - 2 bᵀ R_{k-1} b + l²``:

* spectral relaxation: ``a⁰`` = top generalised eigenvector of ``K̄ᵀ R K̄ a = λ (K̄ᵀ K̄ + εI) a``
  (scaled so ``‖K̄ a⁰‖² = l``);
* sigmoid smoothing: from ``a⁰``, L-BFGS (scipy) maximises ``ψ(K̄a)ᵀ R ψ(K̄a)`` with
  ``ψ(z) = 2/(1+e^{-z}) - 1``; gradient ``2 K̄ᵀ((R ψ) ⊙ ψ')``, ``ψ' = (1 - ψ²)/2``;
* the solution with the larger discrete ``bᵀ R b`` is kept (as in the paper).
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np
import scipy.linalg
import scipy.optimize

from dseh_jax.baselines import encoder as encoder_lib
from dseh_jax.baselines import kernel

DEFAULT_NUM_LABELLED = 1000
DEFAULT_ITERATIONS = 200           # L-BFGS iterations per bit
DEFAULT_EPS = 1e-4                 # ε: ridge on K̄ᵀK̄, relative to its mean eigenvalue


def similarity(y: np.ndarray) -> np.ndarray:
  """``S = 2·[y_i · y_j > 0] - 1``, float64 ``{-1, +1} [l, l]`` from multi-hot ``y [l, c]``."""
  return np.where(y @ y.T > 0, 1.0, -1.0)


def _sign(z: np.ndarray) -> np.ndarray:
  return np.where(z >= 0, 1.0, -1.0)


def _smooth_objective(a: np.ndarray, kbar: np.ndarray, residue: np.ndarray):
  """``-ψ(K̄a)ᵀ R ψ(K̄a) / l²`` and its gradient (scaled for L-BFGS)."""
  psi = np.tanh(0.5 * (kbar @ a))                # 2/(1+e^{-z}) - 1 = tanh(z/2)
  r_psi = residue @ psi
  scale = 1.0 / kbar.shape[0] ** 2
  return -scale * (psi @ r_psi), -scale * kbar.T @ (r_psi * (1.0 - psi * psi))


def ksh_projections(kbar: Any, s: Any, bits: int, iterations: int = DEFAULT_ITERATIONS,
                    eps: float = DEFAULT_EPS) -> tuple[np.ndarray, np.ndarray]:
  """Greedy KSH directions for centred kernel features ``kbar [l, m]`` and ``s [l, l]``.

  Returns ``(A [m, bits], costs [bits + 1])`` with ``costs[k] = ‖r S - H_k H_kᵀ‖²_F``,
  ``H_k = sign(K̄ A[:, :k])`` (``costs[0] = ‖r S‖²``).
  """
  kbar = np.asarray(kbar, np.float64)
  bits = encoder_lib.check_bits(bits)
  l, m = kbar.shape
  residue = bits * np.asarray(s, np.float64)
  gram = kbar.T @ kbar
  gram[np.diag_indices(m)] += eps * max(np.trace(gram) / m, 1e-12)
  projections, costs = np.zeros((m, bits)), [float(np.sum(residue ** 2))]
  for k in range(bits):
    target = kbar.T @ residue @ kbar
    _, vec = scipy.linalg.eigh((target + target.T) / 2, gram, subset_by_index=(m - 1, m - 1))
    a0 = vec[:, 0] * np.sqrt(l / max(np.sum((kbar @ vec[:, 0]) ** 2), 1e-300))
    result = scipy.optimize.minimize(_smooth_objective, a0, args=(kbar, residue), jac=True,
                                     method="L-BFGS-B", options={"maxiter": int(iterations)})
    candidates = [a0] + ([result.x] if np.all(np.isfinite(result.x)) else [])
    gains = [_sign(kbar @ a) @ residue @ _sign(kbar @ a) for a in candidates]
    a = candidates[int(np.argmax(gains))]
    b = _sign(kbar @ a)
    residue -= np.outer(b, b)
    projections[:, k] = a
    costs.append(float(np.sum(residue ** 2)))
  return projections, np.asarray(costs)


def fit(x_train: Any, y_train: Any, bits: int, key: encoder_lib.KeyLike, *,
        num_anchors: int = kernel.DEFAULT_NUM_ANCHORS,
        num_labelled: int = DEFAULT_NUM_LABELLED, sigma: Optional[float] = None,
        iterations: int = DEFAULT_ITERATIONS) -> kernel.KernelHashEncoder:
  """KSH encoder of ``bits`` bits from ``x_train [n, d]`` and multi-hot ``y_train [n, c]``.

  ``key`` (jax key or int seed) draws the anchors and the ``min(n, num_labelled)``
  labelled points; ``sigma=None`` is the mean training-to-anchor distance.
  """
  x = encoder_lib.check_features(x_train, "x_train")
  y = kernel.check_labels(y_train, x.shape[0])
  bits = encoder_lib.check_bits(bits)
  if isinstance(num_labelled, bool) or not isinstance(num_labelled, (int, np.integer)) \
      or num_labelled < 2:
    raise ValueError(f"num_labelled={num_labelled!r}; expected an int ≥ 2")
  anchor_key, label_key = jax.random.split(encoder_lib.as_key(key))
  anchors, sigma, phi = kernel.anchor_features(x, anchor_key, num_anchors, sigma)
  mean = phi.mean(axis=0)
  l = min(int(num_labelled), x.shape[0])
  index = np.sort(np.asarray(jax.random.permutation(label_key, x.shape[0]))[:l])
  projection, _ = ksh_projections(phi[index] - mean, similarity(y[index]), bits, iterations)
  return kernel.KernelHashEncoder(anchors=anchors, sigma=sigma, projection=projection,
                                  feature_mean=mean, name="ksh")
