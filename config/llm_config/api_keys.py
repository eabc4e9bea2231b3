"""The `apiKeys` secret of a stack: the gateway's keys file, by key name.

Same shape as the `keys:` map of `GATEWAY_API_KEYS_FILE` (see `llm_gateway.keys`):

    apiKeys:
      team-a:
        digest: 9f86d0...          # sha256 hex of the key, never the key itself
        models: [llama3.2, "qwen2.5:*"]
        requestsPerMinute: 60
        maxConcurrent: 4
        tokensPerMinute: 20000
        tokensPerDay: 2000000
        weight: 2
        priorities: [interactive, batch]
        admin: false
        semanticCache: true        # rephrased questions may hit (gateway.semanticCache)
        expires: 2027-01-01T00:00:00Z

Checked here, before any resource exists, so a typo fails the deploy with the key's
name instead of a gateway that refuses to start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiKeyEntry(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    digest: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    models: list[str] | None = None
    requests_per_minute: int | None = Field(None, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)
    weight: float | None = Field(None, gt=0, le=1000)
    # Priority classes the key may use, its default first (the gateway's classes).
    priorities: list[Literal["interactive", "batch"]] | None = Field(None, min_length=1)
    admin: bool | None = None
    # The keys that share cache entries with it (the gateway's GATEWAY_CACHE_SCOPE=group).
    cache_group: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    semantic_cache: bool | None = None
    # Kept as written (ISO 8601); the gateway parses it.
    expires: str | None = None

    @field_validator("expires", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        # A YAML reader may have turned the timestamp into a datetime already.
        if isinstance(value, datetime):
            return value.isoformat()
        return value


def validate_api_keys(value: object, key: str = "llm-stack:apiKeys") -> list[str]:
    """Problems with an `apiKeys` value (empty when it is fine); never echoes digests."""
    if not isinstance(value, Mapping) or not value:
        return [f"{key}: expected a map of key name -> {{digest: <sha256 hex>, ...}}"]
    problems: list[str] = []
    for name, entry in value.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            problems.append(f"{key}.{name}: key names use letters, digits, '.', '_', '-'")
            continue
        try:
            ApiKeyEntry.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"{key}.{name}.{where}: {err['msg']}")
    return problems


def keys_file_text(keys: Mapping[str, Any]) -> str:
    """The gateway's keys file (JSON, which its YAML reader accepts) for these keys."""
    normalized = {
        name: ApiKeyEntry.model_validate(entry).model_dump(by_alias=True, exclude_none=True)
        for name, entry in sorted(keys.items())
    }
    return json.dumps({"keys": normalized}, indent=2, sort_keys=True) + "\n"
