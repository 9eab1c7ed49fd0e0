"""Comparison results cached in the store, keyed by (kind, model ids, options).

Results are cached as the wire envelope bytes (:func:`modelbonsai.wire.encode_result`), so a hit
is decoded without recomputation and the same bytes can be paged to the editor. The key always
holds the model ids under "models" (the store drops entries mentioning a deleted model) and
:data:`RESULT_VERSION`, bumped whenever a result's meaning or layout changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from .. import wire

RESULT_VERSION = 4  # 2: structured weights compared in the base layout; position-level CKA; 3: factorised
# weights compared through their factors, identical only when every tensor was compared; 4: behaviour
# of classifiers carries McNemar's test and the confusion change


class ResultCache(Protocol):
    """The part of `store.LineageStore` comparisons use."""

    def cache_get(self, kind: str, key: dict[str, Any]) -> bytes | None: ...

    def cache_put(self, kind: str, key: dict[str, Any], data: bytes) -> None: ...


class MemoryCache:
    """An in-process cache with the store's interface (tests, notebooks, no workspace)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], bytes] = {}

    def cache_get(self, kind: str, key: dict[str, Any]) -> bytes | None:
        return self.entries.get((kind, _canonical(key)))

    def cache_put(self, kind: str, key: dict[str, Any], data: bytes) -> None:
        self.entries[(kind, _canonical(key))] = bytes(data)


def _canonical(key: Mapping[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def result_key(models: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
    """The cache key: model ids by role ("base", "other"), options, and the result version."""
    return {"v": RESULT_VERSION, "models": dict(models), "options": json.loads(_canonical(options))}


def cached(
    cache: ResultCache | None,
    kind: str,
    key: dict[str, Any],
    compute: Callable[[], tuple[str, dict[str, Any], dict[str, np.ndarray]]],
) -> tuple[wire.Result, bytes, bool]:
    """(decoded result, envelope bytes, hit?) — computing and storing it on a miss."""
    if cache is not None:
        data = cache.cache_get(kind, key)
        if data is not None:
            try:
                return wire.decode_result(data), data, True
            except wire.WireError:
                pass  # an unreadable entry (older layout, damaged file): recompute and replace it
    k, meta, tensors = compute()
    data = wire.encode_result(k, meta, tensors)
    if cache is not None:
        cache.cache_put(kind, key, data)
    return wire.decode_result(data), data, False
