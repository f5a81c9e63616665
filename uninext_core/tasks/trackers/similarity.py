"""Bi-softmax embedding similarity (QDTrack, Pang et al. CVPR 2021, Eq. 4; used unchanged by IDOL and UNINEXT)."""

from __future__ import annotations

import numpy as np


def _softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def bisoftmax_similarity(det_embeddings: np.ndarray, memory_embeddings: np.ndarray) -> np.ndarray:
    """Average of the row softmax and the column softmax of the dot-product matrix.

    Args:
        det_embeddings: (N, D) float embeddings of this frame's detections.
        memory_embeddings: (M, D) float embeddings of the memory (tracks, and backdrops where used).

    Returns:
        (N, M) float32 in [0, 1]: (softmax over memories + softmax over detections) / 2. One (N, D)·(D, M) product,
        cost O(N·M·D). Computed in float32 like the official (PyTorch) trackers: with a single memory the row
        softmax is 1 and the similarity is 0.5 plus half a column share that float32 rounds to 0 once it is below
        ~3e-8, so "> 0.5" tests come out as in the official code.
    """
    det = np.asarray(det_embeddings, dtype=np.float32)
    memory = np.asarray(memory_embeddings, dtype=np.float32)
    if det.ndim != 2 or memory.ndim != 2 or det.shape[1] != memory.shape[1]:
        raise ValueError(f"need (N, D) and (M, D) embeddings with equal D, got {det.shape} and {memory.shape}")
    if det.shape[0] == 0 or memory.shape[0] == 0:
        return np.zeros((det.shape[0], memory.shape[0]), dtype=np.float32)
    logits = det @ memory.T
    return (_softmax(logits, axis=1) + _softmax(logits, axis=0)) / 2.0
