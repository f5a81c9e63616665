"""`PromptCache`: text and template features computed once per prompt content, shared by the sessions of a backend.

The text encoder (BERT) and the template encoder run when a prompt changes (and at template updates), never per
frame (reference §11.1: "cache 256×768 outputs per prompt string"). Entries are keyed by content — the token ids of a
text prompt, a digest of a template crop's pixels — so several sessions on one backend (the ROS node's cameras) that
get the same prompt encode it once. Least recently used entries are dropped beyond `capacity`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import torch

from uninext_core.deploy.backend import Backend
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.template_crop import TemplateCrop
from uninext_core.model.text_encoder import TokenizedText


class CacheStats(NamedTuple):
    """Lookups answered from the cache (hits) and encoder runs (text_encodings, template_encodings)."""

    hits: int
    text_encodings: int
    template_encodings: int
    entries: int


def _text_key(tokens: TokenizedText) -> tuple[str, bytes]:
    ids = tokens.input_ids.detach().cpu().to(torch.int64).numpy()
    mask = tokens.attention_mask.detach().cpu().to(torch.int64).numpy()
    return "text", ids.tobytes() + b"|" + mask.tobytes() + repr(ids.shape).encode()


def _template_key(crop: TemplateCrop) -> tuple[str, bytes]:
    digest = hashlib.sha1(crop.crop.detach().cpu().contiguous().numpy().tobytes())
    digest.update(np.packbits(crop.padding.detach().cpu().numpy()).tobytes())
    digest.update(repr(tuple(crop.crop.shape)).encode())
    return "template", digest.digest()


class PromptCache:
    """Content-keyed LRU cache of encoded prompts in front of one backend (thread-safe).

    Args:
        backend: the backend whose encoders fill the cache; every session sharing the cache must use it.
        capacity: entries kept (>= 1).
    """

    def __init__(self, backend: Backend, *, capacity: int = 64) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        self._backend = backend
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, bytes], PromptFeatures] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._text_encodings = 0
        self._template_encodings = 0

    @property
    def backend(self) -> Backend:
        """The backend whose encoders this cache calls."""
        return self._backend

    def stats(self) -> CacheStats:
        """Counters since construction or `clear`."""
        with self._lock:
            return CacheStats(self._hits, self._text_encodings, self._template_encodings, len(self._entries))

    def clear(self) -> None:
        """Drop every entry and zero the counters."""
        with self._lock:
            self._entries.clear()
            self._hits = self._text_encodings = self._template_encodings = 0

    def _lookup(self, key: tuple[str, bytes]) -> PromptFeatures | None:
        features = self._entries.get(key)
        if features is not None:
            self._entries.move_to_end(key)
            self._hits += 1
        return features

    def _store(self, key: tuple[str, bytes], features: PromptFeatures) -> None:
        self._entries[key] = features
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def text(self, tokens: TokenizedText) -> PromptFeatures:
        """Features of one tokenised text prompt ((1, T) ids and mask), encoded on first use.

        Returns:
            PromptFeatures hidden (1, T, C_l), mask (1, T) on the backend's device.
        """
        if tokens.input_ids.dim() != 2 or tokens.input_ids.shape[0] != 1:
            raise ValueError(f"expected one tokenised prompt (1, T), got input_ids {tuple(tokens.input_ids.shape)}")
        key = _text_key(tokens)
        with self._lock:
            features = self._lookup(key)
            if features is None:
                features = self._backend.encode_text(tokens)
                self._text_encodings += 1
                self._store(key, features)
            return features

    def template(self, crop: TemplateCrop) -> PromptFeatures:
        """Features of one template crop ((4, S, S) + (S, S) padding), encoded on first use.

        Returns:
            PromptFeatures hidden (1, (S/8)², C_l), mask (1, (S/8)²) on the backend's device.
        """
        key = _template_key(crop)
        with self._lock:
            features = self._lookup(key)
            if features is None:
                features = self._backend.encode_template(crop.crop[None], crop.padding[None])
                self._template_encodings += 1
                self._store(key, features)
            return features
