"""The long-lived parts of one gateway process, built once per app from its settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from llm_gateway import __version__
from llm_gateway.admission import Admitter
from llm_gateway.cache.lifetime import EntryLifetime
from llm_gateway.catalog import ModelCatalog
from llm_gateway.checks import Gatekeeper
from llm_gateway.flight import FlightRegistry
from llm_gateway.keys import KeyRing
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.observe import AccessLog, Recorder
from llm_gateway.proxy import Proxy
from llm_gateway.redis_guard import RedisGuard, connect
from llm_gateway.relay import Relay
from llm_gateway.routing.clock import SystemClock
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.drains import Drains
from llm_gateway.routing.fair_queue import FairQueue
from llm_gateway.routing.instances import Instance
from llm_gateway.routing.peers import PeerSync
from llm_gateway.routing.prefix import Affinity
from llm_gateway.semantic import Embedder, SemanticCache, SemanticSettings
from llm_gateway.settings import Settings
from llm_gateway.tracing import NO_TRACING, Steps, Tracing
from llm_gateway.upstream import Timeouts, Upstream
from llm_gateway.vocabulary import normalize_model, now_ms

log = logging.getLogger("llm_gateway")


@dataclass
class Services:
    settings: Settings
    metrics: GatewayMetrics
    # Every upstream client: the one upstream, or one per Ollama instance.
    upstreams: list[Upstream]
    dispatcher: Dispatcher | None
    guard: RedisGuard
    # The response cache's Redis: `guard` itself when GATEWAY_CACHE_REDIS_URL is unset.
    cache_guard: RedisGuard
    catalog: ModelCatalog
    flights: FlightRegistry
    proxy: Proxy
    access_log: AccessLog
    _flusher: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        keyring: KeyRing | None,
        access_log: AccessLog,
        tracing: Tracing | None = None,
    ) -> Services:
        metrics = GatewayMetrics(CollectorRegistry())
        metrics.build.labels(__version__).set(1)
        timeouts = Timeouts(
            connect=settings.connect_timeout_seconds,
            first_byte=settings.first_byte_timeout_seconds,
            idle=settings.idle_timeout_seconds,
            total=settings.total_timeout_seconds,
        )

        def client(url: str) -> Upstream:
            return Upstream(
                url, timeouts, settings.upstream_max_connections, settings.upstream_ca_file
            )

        upstream = client(settings.upstream_url)
        steps: Steps = tracing or (Tracing.otlp() if settings.tracing else NO_TRACING)
        redis_client = connect(
            settings.redis_url, settings.redis_timeout_seconds, settings.redis_ca_file
        )
        guard = RedisGuard(redis_client, settings.redis_retry_after_seconds, metrics)
        dispatcher: Dispatcher | None = None
        catalog_holder: list[ModelCatalog] = []
        if settings.routing == "model-aware":
            clock = SystemClock()
            vram = settings.instance_vram_gb
            instances = [
                Instance(
                    name=name,
                    upstream=client(url),
                    num_parallel=settings.num_parallel,
                    max_loaded=settings.max_loaded_models,
                    vram=int(vram * 1e9) if vram else None,
                )
                for name, url in settings.named_instances
            ]
            dispatcher = Dispatcher(
                instances,
                FairQueue(settings.queue_max_depth, settings.queue_burst),
                metrics,
                label=lambda model: catalog_holder[0].label(model),
                poll_seconds=settings.poll_seconds,
                load_patience=settings.load_patience_seconds,
                weights_size=lambda model: catalog_holder[0].size(model),
                affinity=Affinity(
                    settings.affinity_cache_tokens,
                    settings.affinity_load_share,
                    settings.affinity_wait,
                )
                if settings.prefix_affinity
                else None,
                clock=clock,
                # Drains hold on every replica: read from Redis as often as /api/ps.
                drains=Drains(clock, guard, interval=settings.poll_seconds),
            )
            upstreams = [i.upstream for i in instances]
            any_upstream = dispatcher.any_upstream
        else:
            upstreams = [upstream]

            def any_upstream() -> Upstream:
                return upstream

        cache_guard = guard
        if settings.cache_redis_url is not None:
            # Its own guard: a dead or slow cache Redis is a miss, and never makes the
            # limits skip the state Redis.
            cache_client = connect(
                settings.cache_redis_url,
                settings.redis_timeout_seconds,
                settings.cache_redis_ca_file or settings.redis_ca_file,
            )
            cache_guard = RedisGuard(cache_client, settings.redis_retry_after_seconds, metrics)
        if dispatcher is not None and settings.share_in_flight:
            dispatcher.peers = PeerSync(
                guard,
                state=dispatcher.peer_state,
                apply=dispatcher.apply_peers,
                heartbeat=settings.share_heartbeat_seconds,
                clock=dispatcher.clock,
            )
        # A lease outlives the longest request, so a crashed replica's slots expire.
        admitter = Admitter(
            guard,
            lease_seconds=settings.total_timeout_seconds + 60,
            usage_retention_days=settings.usage_retention_days,
            hits_cost_tokens=settings.quota_hits_cost_tokens,
            cache=cache_guard,
        )
        lifetime = EntryLifetime(settings.cache_ttl_seconds, settings.cache_stale_seconds)
        catalog = ModelCatalog(any_upstream, metrics, settings.model_refresh_seconds)
        catalog_holder.append(catalog)
        flights = FlightRegistry()
        semantic = (
            _semantic_cache(settings, cache_guard, any_upstream, dispatcher, catalog, metrics)
            if settings.semantic_cache
            else None
        )
        proxy = Proxy(
            settings=settings,
            gatekeeper=Gatekeeper(
                keyring, metrics, settings.max_messages, settings.max_embed_inputs
            ),
            upstream=upstream,
            admitter=admitter,
            relay=Relay(
                upstream,
                dispatcher,
                admitter,
                lifetime,
                flights,
                metrics,
                steps,
                settings.cache_max_entry_bytes,
            ),
            dispatcher=dispatcher,
            catalog=catalog,
            flights=flights,
            recorder=Recorder(metrics, access_log),
            metrics=metrics,
            tracing=steps,
            semantic=semantic,
        )
        return cls(
            settings, metrics, upstreams, dispatcher, guard, cache_guard, catalog, flights,
            proxy, access_log,
        )  # fmt: skip

    @property
    def cache_shares_state(self) -> bool:
        return self.cache_guard is self.guard

    def any_upstream(self) -> Upstream:
        """The upstream for requests any instance answers (readiness, model listing)."""
        return self.dispatcher.any_upstream() if self.dispatcher else self.upstreams[0]

    async def start(self) -> None:
        if self.cache_shares_state and self.settings.cache_mode != "off":
            log.warning(
                "the response cache shares the state Redis (GATEWAY_REDIS_URL): under "
                "memory pressure its eviction policy applies to limits and usage too; "
                "set GATEWAY_CACHE_REDIS_URL to give the cache a Redis of its own"
            )
        for upstream in self.upstreams:
            await upstream.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()
        await self.catalog.start()
        self._flusher = asyncio.create_task(self.access_log.run_flusher(), name="access-log")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.catalog.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.flights.cancel_all()
        if self.proxy.semantic is not None:
            await self.proxy.semantic.stop()
        for upstream in self.upstreams:
            await upstream.aclose()
        await self.guard.aclose()
        if not self.cache_shares_state:
            await self.cache_guard.aclose()
        self.proxy.tracing.shutdown()  # sends what is still batched


def _semantic_cache(
    settings: Settings,
    guard: RedisGuard,
    any_upstream: Callable[[], Upstream],
    dispatcher: Dispatcher | None,
    catalog: ModelCatalog,
    metrics: GatewayMetrics,
) -> SemanticCache:
    ttl = settings.cache_ttl_seconds + settings.cache_stale_seconds
    config = SemanticSettings(
        enabled=True,
        embed_model=settings.semantic_embed_model,
        threshold=settings.semantic_threshold,
        models=frozenset(normalize_model(m) for m in settings.semantic_models),
        embed_timeout_seconds=settings.semantic_embed_timeout_seconds,
        max_candidates=settings.semantic_max_candidates,
        ttl_seconds=ttl,
    )
    embedder = Embedder(
        guard, any_upstream, dispatcher, settings.semantic_embed_model,
        settings.semantic_embed_timeout_seconds, ttl, metrics,
    )  # fmt: skip
    return SemanticCache(config, guard, embedder, catalog.digest, metrics, now_ms)
