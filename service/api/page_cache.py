"""Encoded pages of ``GET /engines``, reused while the engine index has not changed.

Dashboards and scripts poll the same few queries; between two refreshes of the index
(``api.index_interval_ms``) the answer to a query is the same bytes, except for the
``stale`` flags, which move with the clock: an entry is reused for at most ``max_age_s``.
Bounded: at most ``size`` queries; the whole cache is dropped when the index changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class PageCache:
    def __init__(self, size: int = 256, max_age_s: float = 1.0) -> None:
        self.size = size
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._version = -1
        self._pages: dict[Hashable, tuple[float, bytes]] = {}
        self.hits = 0
        self.misses = 0

    def peek(self, version: int, query: Hashable) -> bytes | None:
        """The cached page, or None."""
        with self._lock:
            hit = self._pages.get(query) if version == self._version else None
            if hit is None or time.monotonic() - hit[0] >= self.max_age_s:
                return None
            self.hits += 1
            return hit[1]

    def get(self, version: int, query: Hashable, build: Callable[[], bytes]) -> bytes:
        """The page for ``query`` at index ``version``: cached, or ``build()`` now."""
        now = time.monotonic()
        with self._lock:
            if version != self._version:
                self._version, self._pages = version, {}
            hit = self._pages.get(query)
            if hit is not None and now - hit[0] < self.max_age_s:
                self.hits += 1
                return hit[1]
        page = build()
        with self._lock:
            self.misses += 1
            if version == self._version:
                if len(self._pages) >= self.size:
                    self._pages.clear()
                self._pages[query] = (now, page)
        return page


JSON_HEADERS = [(b"content-type", b"application/json")]


class CachedPages:
    """ASGI middleware answering ``GET /engines`` from the page cache when it has the page,
    before FastAPI parses and validates anything (a cached page came from a request that
    passed validation with the same query string). Anything else goes to the app."""

    def __init__(self, app: Any, path: str = "/engines") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "GET":
            runtime = getattr(scope["app"].state, "runtime", None)
            if runtime is not None:
                body = runtime.page_cache.peek(runtime.engine_index.version,
                                               page_key(runtime, scope["query_string"]))
                if body is not None:
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [*JSON_HEADERS,
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


def page_key(runtime: Any, query_string: bytes) -> Hashable:
    """What a page depends on besides the index version: the query, what is committed, the
    model."""
    return (query_string, runtime.store.committed_seq, runtime.model.version)
