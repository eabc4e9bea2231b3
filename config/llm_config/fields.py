"""Field types and the section base shared by every part of the stack config.

Kept apart from `model.py` so that the platform sections (`kubernetes.py`) use the
same checks (pinned images, ports, camelCase keys, unknown keys refused) without an
import cycle.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# repo[:port]/path:tag or ...@sha256:<64 hex>; the tag must not be `latest`.
_IMAGE_RE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_DURATION_RE = re.compile(r"^(?:-1|0|[0-9]+(?:ms|s|m|h))$")
_MODEL_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/-]*(?::[a-zA-Z0-9._-]+)?$")


def _pinned_image(value: str) -> str:
    match = _IMAGE_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not an image reference like 'repo/name:1.2.3'")
    tag, digest = match.group("tag"), match.group("digest")
    if tag is None and digest is None:
        raise ValueError(f"{value!r} is not pinned: give an exact tag (repo:1.2.3) or a digest")
    if tag == "latest":
        raise ValueError(f"{value!r} uses 'latest': pin an exact tag (repo:1.2.3) or a digest")
    return value


def _duration(value: str) -> str:
    if not _DURATION_RE.match(value):
        raise ValueError(f"{value!r} is not a duration like '5m', '30s', '1h', '0' or '-1'")
    return value


def _model_name(value: str) -> str:
    if not _MODEL_RE.match(value):
        raise ValueError(f"{value!r} is not an Ollama model name like 'llama3.2:1b'")
    return value


PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
Duration = Annotated[str, AfterValidator(_duration)]
ModelName = Annotated[str, AfterValidator(_model_name)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Section(BaseModel):
    """A part of the stack config: camelCase keys, unknown keys refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
