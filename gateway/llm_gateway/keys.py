"""API keys: only SHA-256 digests are kept; a request's key is found by one dict lookup.

Keys come from `GATEWAY_API_KEYS` (digests, default limits) and from
`GATEWAY_API_KEYS_FILE` (YAML or JSON) that names each key and may give it allowed
models, its own limits and an expiry:

    keys:
      team-a:
        digest: 9f86d0...        # sha256 hex of the key
        models: [llama3.2, "qwen2.5:*"]
        requestsPerMinute: 60
        maxConcurrent: 4
        tokensPerMinute: 20000      # prompt + completion tokens
        tokensPerDay: 2000000
        weight: 2                   # its share of a busy GPU, against weight-1 keys
        priorities: [interactive, batch]   # classes it may use; the first is its default
        admin: false                # may read /admin/*, may unload models
        cacheGroup: team-a          # shares cache entries with it (GATEWAY_CACHE_SCOPE=group)
        semanticCache: true         # rephrased questions may hit (GATEWAY_SEMANTIC_CACHE)
        expires: 2027-01-01T00:00:00Z
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from llm_gateway.contract import KEY_PREFIX as KEY_PREFIX  # older imports; use contract
from llm_gateway.contract import digest_of
from llm_gateway.contract import mint_key as mint_key  # older imports; use contract
from llm_gateway.settings import Settings
from llm_gateway.vocabulary import PRIORITIES, normalize_model

# Longer than any key we mint, short enough that hashing junk costs nothing.
MAX_KEY_LENGTH = 256


def cache_namespace(scope: str, name: str, group: str | None = None) -> str:
    """The part of a cache key that says who may share the entry: "" (every key),
    "k.<name>:" (one key) or "g.<group>:" (a group's keys)."""
    if scope == "shared":
        return ""
    if scope == "group" and group:
        return f"g.{group}:"
    return f"k.{name}:"


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: str
    requests_per_minute: int
    max_concurrent: int
    models: tuple[str, ...] | None = None
    expires: datetime | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    weight: float = 1.0
    # Allowed priority classes (indexes into PRIORITIES), the default first.
    priorities: tuple[int, ...] = tuple(range(len(PRIORITIES)))
    admin: bool = False
    # The cache entries this key may share (see `cache_namespace`); "" shares all.
    cache_namespace: str = ""
    # May be answered by the semantic cache (when the stack turns it on).
    semantic_cache: bool = False

    def allows(self, model: str) -> bool:
        if self.models is None:
            return True
        wanted = normalize_model(model)
        return any(fnmatch.fnmatchcase(wanted, pattern) for pattern in self.models)

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires


class _KeyEntry(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    digest: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    models: list[str] | None = None
    requests_per_minute: int | None = Field(None, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)
    weight: float = Field(1.0, gt=0, le=1000)
    priorities: list[str] | None = Field(None, min_length=1)
    admin: bool = False
    cache_group: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    semantic_cache: bool = False
    expires: datetime | None = None

    @field_validator("priorities")
    @classmethod
    def _known_priorities(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if name not in PRIORITIES:
                raise ValueError(f"unknown priority {name!r}: use {', '.join(PRIORITIES)}")
        return value

    @field_validator("expires")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: dict[str, _KeyEntry]

    @field_validator("keys")
    @classmethod
    def _names(cls, value: dict[str, _KeyEntry]) -> dict[str, _KeyEntry]:
        for name in value:
            if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
                raise ValueError(f"key name {name!r}: use letters, digits, '-', '_', '.'")
        return value


class KeyFileError(ValueError):
    pass


def _read_keys_file(path: Path) -> _KeysFile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"GATEWAY_API_KEYS_FILE {path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise KeyFileError(f"GATEWAY_API_KEYS_FILE {path}: not YAML/JSON: {exc}") from None
    try:
        return _KeysFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise KeyFileError(f"GATEWAY_API_KEYS_FILE {path}: {problems}") from None


class KeyRing:
    """The accepted keys, by digest."""

    def __init__(self, keys: Mapping[str, ApiKey]) -> None:
        self._by_digest = dict(keys)

    def __len__(self) -> int:
        return len(self._by_digest)

    @property
    def names(self) -> list[str]:
        return sorted(k.name for k in self._by_digest.values())

    def lookup(self, presented: str) -> ApiKey | None:
        return self._by_digest.get(digest_of(presented))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        keys: dict[str, ApiKey] = {}
        scope = settings.cache_scope
        for digest in settings.api_keys:
            name = f"key-{digest[:8]}"
            keys[digest] = ApiKey(
                name=name,
                digest=digest,
                requests_per_minute=settings.requests_per_minute,
                max_concurrent=settings.max_concurrent_per_key,
                tokens_per_minute=settings.tokens_per_minute,
                tokens_per_day=settings.tokens_per_day,
                cache_namespace=cache_namespace(scope, name),
            )
        if settings.api_keys_file is not None:
            for name, entry in _read_keys_file(settings.api_keys_file).keys.items():
                digest = entry.digest.lower()
                keys[digest] = ApiKey(
                    name=name,
                    digest=digest,
                    requests_per_minute=entry.requests_per_minute or settings.requests_per_minute,
                    max_concurrent=entry.max_concurrent or settings.max_concurrent_per_key,
                    models=(
                        None
                        if entry.models is None
                        else tuple(normalize_model(m) for m in entry.models)
                    ),
                    expires=entry.expires,
                    tokens_per_minute=entry.tokens_per_minute or settings.tokens_per_minute,
                    tokens_per_day=entry.tokens_per_day or settings.tokens_per_day,
                    weight=entry.weight,
                    priorities=(
                        tuple(PRIORITIES.index(p) for p in entry.priorities)
                        if entry.priorities
                        else tuple(range(len(PRIORITIES)))
                    ),
                    admin=entry.admin,
                    cache_namespace=cache_namespace(scope, name, entry.cache_group),
                    semantic_cache=entry.semantic_cache,
                )
        return cls(keys)


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries (`Authorization: Bearer` or `X-API-Key`), if any."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


def plausible_key(key: str) -> bool:
    """Cheap shape check so junk and header-injection attempts never reach hashing or logs."""
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


def utcnow() -> datetime:
    return datetime.now(UTC)
