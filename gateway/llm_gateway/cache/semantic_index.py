"""The semantic index in the cache's Redis: every replica reads and feeds the same one.

Under each scope key (`semantic_scope.scope_key`) a hash maps the exact cache key of
each stored answer to its candidate: the question's unit vector (float32), then the
question's text and when it was stored; its field "~v" is a version that every change
bumps. A lookup reads the version; each gateway keeps the decoded candidates of the
scopes it saw last (`ScopeCache`) and reads the whole hash (HGETALL) only when the
version moved. It scans them with one matrix product (numpy): the candidates share
everything but the last user message, and the set is capped (`lua/semantic_add.lua`).
The hash lives as long as the entries it points to; an entry that Redis evicted
(allkeys-lru) or that expired is found missing when a lookup would serve it, and
leaves the index then.

Layout of a candidate: b"SV1" + 4 digits (the vector's width) + the float32 vector +
JSON {"q": question, "at": stored_at_ms}; the JSON is only read for the candidates
close enough to be judged.

Embeddings of texts are cached too, by the text's SHA-256 (`vector_key`), as raw
float32 bytes, so a question asked again costs no embedding call.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

ADD_SCRIPT = (files("llm_gateway") / "lua" / "semantic_add.lua").read_text(encoding="utf-8")

Vector = npt.NDArray[np.float32]

VERSION_FIELD = "~v"

_MAGIC = b"SV1"
_WIDTH = slice(len(_MAGIC), len(_MAGIC) + 4)
_VECTOR = _WIDTH.stop


def unit(vector: Sequence[float] | Vector) -> Vector:
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


def pack_vector(vector: Vector) -> bytes:
    return vector.astype(np.float32).tobytes()


def unpack_vector(raw: bytes) -> Vector | None:
    if not raw or len(raw) % 4:
        return None
    return np.frombuffer(raw, dtype=np.float32)


def encode_candidate(question: str, vector: Vector, stored_at_ms: int) -> bytes:
    meta = orjson.dumps({"q": question, "at": stored_at_ms})
    return b"%s%04d%s%s" % (_MAGIC, len(vector), pack_vector(vector), meta)


@dataclass(frozen=True, slots=True)
class Candidate:
    entry_key: str
    question: str
    stored_at_ms: int


@dataclass(frozen=True, slots=True)
class Candidates:
    """A scope's candidates of one vector width: their keys, vectors (one row each) and
    the raw tails holding their texts."""

    keys: list[str]
    matrix: Vector  # (n, width)
    tails: list[bytes]

    def __len__(self) -> int:
        return len(self.keys)

    def similarities(self, query: Vector) -> Vector:
        """Cosines with a unit query (rows are unit vectors)."""
        return self.matrix @ query

    def candidate(self, i: int) -> Candidate | None:
        try:
            meta = orjson.loads(self.tails[i])
            question, at = meta["q"], meta["at"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if not isinstance(question, str) or not isinstance(at, int):
            return None
        return Candidate(self.keys[i], question, at)


def decode_candidates(reply: Any, width: int) -> Candidates:
    """HGETALL's reply (a dict, or a flat list from a raw pipeline): the candidates of
    this vector width (others, and malformed ones, are skipped)."""
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    keys: list[str] = []
    rows: list[bytes] = []
    tails: list[bytes] = []
    if isinstance(reply, dict):
        end = _VECTOR + 4 * width
        wanted = b"%04d" % width
        for field, raw in reply.items():
            if not isinstance(raw, bytes) or raw[:_VECTOR] != _MAGIC + wanted or len(raw) < end:
                continue
            keys.append(field.decode() if isinstance(field, bytes) else str(field))
            rows.append(raw[_VECTOR:end])
            tails.append(raw[end:])
    matrix = np.frombuffer(b"".join(rows), dtype=np.float32).reshape(len(rows), width)
    return Candidates(keys, matrix, tails)


class ScopeCache:
    """The decoded candidates of the scopes a gateway looked up last, by version (an
    LRU of `max_scopes`: at most 64 candidates of 1.5 KB each per scope). A scope's
    vector width never changes: the embedding model is part of its key."""

    def __init__(self, max_scopes: int = 256) -> None:
        self._max = max_scopes
        self._scopes: OrderedDict[str, tuple[bytes, Candidates]] = OrderedDict()

    def get(self, scope: str, version: bytes) -> Candidates | None:
        found = self._scopes.get(scope)
        if found is None or found[0] != version:
            return None
        self._scopes.move_to_end(scope)
        return found[1]

    def put(self, scope: str, version: bytes, candidates: Candidates) -> None:
        self._scopes[scope] = (version, candidates)
        self._scopes.move_to_end(scope)
        while len(self._scopes) > self._max:
            self._scopes.popitem(last=False)


def version_of(reply: Any) -> bytes | None:
    """The "~v" field of an HGETALL reply."""
    if isinstance(reply, dict):
        value = reply.get(VERSION_FIELD.encode(), reply.get(VERSION_FIELD))
        return value if isinstance(value, bytes) else None
    return None


def vector_key(embed_model: str, embed_digest: str, text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"llm:e1:{embed_model}:{embed_digest[:16]}:{digest}"
