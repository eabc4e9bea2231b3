"""The semantic cache: a rephrased question answered from the exact cache's entries.

Off unless the stack turns it on (`GATEWAY_SEMANTIC_CACHE`), and then only for the
listed models (`GATEWAY_SEMANTIC_MODELS`, empty: every model) and the keys that opt
in (`semanticCache: true` in the keys file; with auth disabled, every request). Only a
request the exact cache would look up AND store is eligible (deterministic by default;
`Cache-Control: no-cache` or `no-store` bypasses both caches), and only when it missed
the exact cache.

A lookup (`SemanticCache.lookup`):

1. `cache/semantic_scope.py`: the last user message, and the scope key of everything
   else (the exact cache's canonical request without that message, in the same sharing
   namespace, with the embedding model and its digest);
2. `cache/semantic_index.py`: the candidates stored under that scope key in the
   cache's Redis (shared by every replica, surviving restarts): the scope's version
   is read, and the whole hash only when this gateway's decoded copy is older;
3. no candidate: a miss, with no embedding call on the request's path; otherwise the
   question's vector (`Embedder`: cached in Redis by the text's hash, else the stack's
   own Ollama `/api/embed`, routed like any request, within a bounded timeout);
4. a scan of the candidates, best first, judged by `cache/semantic_match.judge`
   (threshold + guards); the first match whose entry is still there and fresh is the
   answer (`X-Cache: SEMANTIC`, `X-Cache-Similarity`, `Age`). An entry gone from Redis
   (evicted, expired) leaves the index.

After a miss whose answer the exact cache stored, `remember` adds it to the index.
Nothing here ever fails a request: Redis down, the embedding model missing, slow or
failing, a malformed index entry: each is a miss, counted by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from llm_gateway.cache import semantic_index as index
from llm_gateway.cache.entry import Entry
from llm_gateway.cache.semantic_guards import Features, features
from llm_gateway.cache.semantic_match import NEAR_MISS_BAND, judge
from llm_gateway.cache.semantic_scope import Question, question_of, scope_key
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.redis_guard import RedisGuard, Unavailable
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.grant import Ticket
from llm_gateway.upstream import Upstream
from llm_gateway.vocabulary import Kind, normalize_model

log = logging.getLogger("llm_gateway.semantic")

# The embedding of a question being indexed, after its answer was sent, may wait
# this long (a lookup waits `embed_timeout_seconds`): a model that must load first
# still gets loaded, and later lookups find it ready.
REMEMBER_TIMEOUT_SECONDS = 60.0

# Candidates over the threshold judged per lookup, best first: past these, a question
# with many close-but-refused neighbours is a miss rather than a long scan.
MAX_JUDGED = 8


@functools.lru_cache(maxsize=4096)
def _features(text: str) -> Features:
    """A text's guard features (about 0.2 ms), kept for the candidates seen again."""
    return features(text)


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    enabled: bool
    embed_model: str
    threshold: float
    models: frozenset[str]  # normalized names; empty: every model
    embed_timeout_seconds: float
    max_candidates: int
    # How long the index and the cached vectors live (the cache's TTL + stale window).
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class SemanticHit:
    entry: Entry
    similarity: float


@dataclass(slots=True)
class Lookup:
    """One request's semantic lookup: the hit, or what `remember` needs after a miss."""

    scope: str
    question: Question
    vector: index.Vector | None = None
    hit: SemanticHit | None = None
    seconds: float = 0.0  # the whole lookup
    embed_seconds: float = 0.0  # the embedding call within it


class Embedder:
    """A text's unit vector: from Redis by the text's hash, else from Ollama's /api/embed."""

    def __init__(
        self,
        guard: RedisGuard,
        upstream: Callable[[], Upstream],
        dispatcher: Dispatcher | None,
        model: str,
        timeout_seconds: float,
        ttl_seconds: int,
        metrics: GatewayMetrics,
    ) -> None:
        self.guard = guard
        self._upstream = upstream
        self._dispatcher = dispatcher
        self.model = model
        self.timeout = timeout_seconds
        self.ttl = ttl_seconds
        self.metrics = metrics
        self._writes: set[asyncio.Future[Any]] = set()

    def key(self, text: str, digest: str) -> str:
        return index.vector_key(self.model, digest, text)

    async def vector(
        self,
        text: str,
        digest: str,
        ticket: Ticket | None,
        cached: Any = None,
        patience: float | None = None,
    ) -> tuple[index.Vector | None, float]:
        """The vector (None: a miss) and the seconds spent calling the model (0: cached).
        `cached`: what Redis holds under `key(text, digest)`, when already read;
        `patience`: how long the call may take (default: the lookup's timeout)."""
        key = self.key(text, digest)
        if cached is None:
            cached = await self.guard.execute("semantic_vector", "GET", key)
        if isinstance(cached, bytes):
            vector = index.unpack_vector(cached)
            if vector is not None:
                return vector, 0.0
        started = time.perf_counter()
        limit = self.timeout if patience is None else patience
        try:
            async with asyncio.timeout(limit):
                raw = await self._embed(text, ticket, limit)
        except TimeoutError:
            self._failed("timeout")
            return None, time.perf_counter() - started
        except Exception as exc:  # any failure of the embedding call is a miss
            self._failed(type(exc).__name__)
            return None, time.perf_counter() - started
        finally:
            self.metrics.semantic_embed_seconds.observe(time.perf_counter() - started)
        spent = time.perf_counter() - started
        if raw is None:
            return None, spent
        vector = index.unit(raw)
        # Stored off the request's path (the lookup needs only the vector).
        task = asyncio.ensure_future(
            self.guard.execute(
                "semantic_vector", "SET", key, index.pack_vector(vector), "EX", self.ttl
            )
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return vector, spent

    def _failed(self, reason: str) -> None:
        self.metrics.semantic_embed_errors.labels(reason).inc()
        log.debug("embedding with %s failed: %s", self.model, reason)

    async def _embed(self, text: str, ticket: Ticket | None, limit: float) -> list[float] | None:
        body = orjson.dumps({"model": self.model, "input": text})
        headers = {"content-type": "application/json"}
        if self._dispatcher is None or ticket is None:
            async with self._upstream().request("POST", "/api/embed", body, headers) as r:
                return self._parse(r.status, await r.read())
        # Routed like any request: a slot for the embedding model on an instance.
        asked = dataclasses.replace(ticket, model=self.model, deadline_seconds=limit)
        grant = await self._dispatcher.acquire(asked)
        try:
            async with grant.upstream.request("POST", "/api/embed", body, headers) as r:
                grant.answered()
                return self._parse(r.status, await r.read())
        finally:
            # No failure reported: an embedding that failed is a cache miss, and the
            # requests that generate tell the router about a sick instance.
            grant.release(None)

    def _parse(self, status: int, content: bytes) -> list[float] | None:
        if status != 200:
            self._failed(f"status {status}")
            return None
        try:
            vectors: Any = orjson.loads(content)["embeddings"]
            vector = vectors[0]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            self._failed("malformed")
            return None
        if not isinstance(vector, list) or not vector:
            self._failed("malformed")
            return None
        return [float(v) for v in vector]


class SemanticCache:
    def __init__(
        self,
        settings: SemanticSettings,
        guard: RedisGuard,
        embedder: Embedder,
        digest_of: Callable[[str], str | None],
        metrics: GatewayMetrics,
        clock_ms: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.guard = guard
        self.embedder = embedder
        self._digest_of = digest_of
        self.metrics = metrics
        self._now_ms = clock_ms
        self._scopes = index.ScopeCache()
        self._tasks: set[asyncio.Future[None]] = set()

    def applies(self, model: str, key_allows: bool) -> bool:
        s = self.settings
        return s.enabled and key_allows and (not s.models or normalize_model(model) in s.models)

    async def lookup(
        self,
        kind: Kind,
        data: dict[str, Any],
        model: str,
        model_digest: str,
        namespace: str,
        ticket: Ticket | None,
        label: str,
    ) -> Lookup | None:
        """None: not eligible (nothing to remember either); else the lookup, maybe a hit."""
        question = question_of(kind, data)
        embed_digest = self._digest_of(self.settings.embed_model)
        if question is None:
            return None
        if embed_digest is None:
            self._count(label, "no_embed_model")
            return None
        started = time.perf_counter()
        scope = scope_key(
            kind, normalize_model(model), model_digest, question,
            self.settings.embed_model, embed_digest, namespace,
        )  # fmt: skip
        found = Lookup(scope, question)
        outcome = await self._search(found, embed_digest, ticket)
        found.seconds = time.perf_counter() - started
        self.metrics.semantic_lookup_seconds.labels(label).observe(found.seconds)
        self._count(label, outcome)
        return found

    async def _search(self, found: Lookup, embed_digest: str, ticket: Ticket | None) -> str:
        # The scope's version and the question's cached vector, in one Redis round trip
        # (redis_batch sends one loop turn's commands together).
        version, cached = await asyncio.gather(
            self.guard.execute("semantic_lookup", "HGET", found.scope, index.VERSION_FIELD),
            self.guard.execute(
                "semantic_vector", "GET", self.embedder.key(found.question.text, embed_digest)
            ),
        )
        if isinstance(version, Unavailable):
            return "redis_unavailable"
        if not isinstance(version, bytes):
            return "miss"  # no embedding on the request's path: `remember` makes it
        known = self._scopes.get(found.scope, version)
        # A scope changed since this gateway read it: read it again during the
        # embedding call, not after it.
        fetch = (
            None
            if known is not None
            else asyncio.ensure_future(
                self.guard.execute("semantic_lookup", "HGETALL", found.scope)
            )
        )
        try:
            found.vector, found.embed_seconds = await self.embedder.vector(
                found.question.text, embed_digest, ticket, cached if cached is not None else b""
            )
        finally:
            if found.vector is None and fetch is not None:
                fetch.cancel()
        if found.vector is None:
            return "embed_failed"
        if fetch is None:
            assert known is not None
            candidates = known
        else:
            reply = await fetch
            if isinstance(reply, Unavailable):
                return "redis_unavailable"
            candidates = index.decode_candidates(reply, len(found.vector))
            current = index.version_of(reply)
            if current is not None:
                self._scopes.put(found.scope, current, candidates)
        if not len(candidates):
            return "miss"
        threshold = self.settings.threshold
        similarities = candidates.similarities(found.vector)
        order = np.argsort(-similarities)[:MAX_JUDGED]
        asked = _features(found.question.text)
        outcome = "miss"
        for i in order.tolist():
            similarity = float(similarities[i])
            if similarity < threshold:
                if similarity >= threshold - NEAR_MISS_BAND and outcome == "miss":
                    outcome = "near_miss"
                break  # sorted: every later candidate is further away
            candidate = candidates.candidate(i)
            if candidate is None:
                continue
            verdict = judge(similarity, asked, _features(candidate.question), threshold)
            if not verdict.hit:
                assert verdict.refused_by is not None
                self.metrics.semantic_refusals.labels(verdict.refused_by).inc()
                outcome = "refused"
                continue
            entry = await self._entry(found.scope, candidate)
            if entry is not None:
                found.hit = SemanticHit(entry, similarity)
                return "hit"
        return outcome

    async def _entry(self, scope: str, candidate: index.Candidate) -> Entry | None:
        raw = await self.guard.execute("semantic_entry", "GET", candidate.entry_key)
        if isinstance(raw, Unavailable):
            return None
        entry = Entry.decode(raw) if isinstance(raw, bytes) else None
        if entry is None:
            # Evicted by Redis (allkeys-lru) or expired: it leaves the index (and the
            # version moves, so that every gateway reads the scope anew).
            await asyncio.gather(
                self.guard.execute("semantic_forget", "HDEL", scope, candidate.entry_key),
                self.guard.execute("semantic_forget", "HINCRBY", scope, index.VERSION_FIELD, 1),
            )
            return None
        return entry if entry.is_fresh(self._now_ms()) else None

    def remember(self, found: Lookup, entry_key: str, ticket: Ticket | None) -> None:
        """Index, in the background, the entry the exact cache just stored for this
        question (the answer has been sent: nothing waits for this)."""
        task = asyncio.ensure_future(self._remember(found, entry_key, ticket))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _remember(self, found: Lookup, entry_key: str, ticket: Ticket | None) -> None:
        embed_digest = self._digest_of(self.settings.embed_model)
        if embed_digest is None:
            return
        vector = found.vector
        if vector is None:
            # Off the request's path, so with time for the embedding model to load.
            vector, _ = await self.embedder.vector(
                found.question.text, embed_digest, ticket, patience=REMEMBER_TIMEOUT_SECONDS
            )
        if vector is None:
            return
        candidate = index.encode_candidate(found.question.text, vector, self._now_ms())
        args = [entry_key, candidate, self.settings.ttl_seconds, self.settings.max_candidates]
        with contextlib.suppress(Exception):
            await self.guard.script("semantic_add", index.ADD_SCRIPT, [found.scope], args)

    async def stop(self) -> None:
        """Cancel the indexing still under way (a gateway shutting down)."""
        tasks = [*self._tasks, *self.embedder._writes]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _count(self, label: str, outcome: str) -> None:
        self.metrics.semantic_lookups.labels(label, outcome).inc()
