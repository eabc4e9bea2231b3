"""The local stack's credentials, kept across runs of the same stack.

The dev key, the dev admin key and the Redis password are minted on the first run and
kept in `<workdir>/credentials.json` (0600, in the 0700 work dir), so saved curl lines,
notebooks and env files keep working after a restart, and the state Redis (whose data
persists) keeps its password. Delete the file to mint new ones.
"""

from __future__ import annotations

import json
import secrets as random_tokens
from pathlib import Path

from llm_gateway.contract import KEY_PREFIX, mint_key

from llm_stack.local.files import write_private
from llm_stack.local.plan import LocalSecrets

FIELDS = ("redisPassword", "devKey", "devAdminKey")


def new_secrets() -> LocalSecrets:
    return LocalSecrets(
        redis_password=random_tokens.token_urlsafe(24),
        dev_key=mint_key(),
        admin_key=mint_key(),
    )


def _read(path: Path) -> LocalSecrets | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(f), str) for f in FIELDS):
        return None
    if not (data["devKey"].startswith(KEY_PREFIX) and data["devAdminKey"].startswith(KEY_PREFIX)):
        return None
    if len(data["redisPassword"]) < 16:
        return None
    return LocalSecrets(
        redis_password=data["redisPassword"],
        dev_key=data["devKey"],
        admin_key=data["devAdminKey"],
    )


def load_or_mint(path: Path) -> tuple[LocalSecrets, bool]:
    """The kept credentials, or new ones written to `path`; True when they were kept."""
    kept = _read(path)
    if kept is not None:
        path.chmod(0o600)
        return kept, True
    fresh = new_secrets()
    values = [fresh.redis_password, fresh.dev_key, fresh.admin_key]
    write_private(path, json.dumps(dict(zip(FIELDS, values, strict=True)), indent=2) + "\n")
    return fresh, False
