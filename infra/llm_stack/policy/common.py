"""What the Docker and the Kubernetes policy rules share: pinned images, secret names.

Pure functions and values, no pulumi-policy: `pack.py` wraps the rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TAG_RE = re.compile(
    r"^(?P<repo>[^@]+?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
SECRET_NAME_RE = re.compile(
    # TOKEN, not TOKENS: GATEWAY_TOKENS_PER_MINUTE is a count, GITHUB_TOKEN a secret.
    r"PASSWORD|PASSWD|SECRET|TOKEN(?!S)|CREDENTIAL|(^|_)AUTH$|API_?KEYS?$"
    r"|(PRIVATE|ACCESS|SIGNING|ENCRYPTION)_KEY"
)


@dataclass(frozen=True)
class ResourceView:
    """What a stack rule needs of one resource."""

    resource_type: str
    name: str
    props: Mapping[str, Any]


def image_problem(reference: str) -> str | None:
    """Why `reference` is not a pinned image (None when it is)."""
    if _IMAGE_ID_RE.match(reference):
        return None  # an image id is as exact as it gets
    match = _TAG_RE.match(reference)
    if match is None:
        return f"{reference!r} is not an image reference"
    tag, digest = match.group("tag"), match.group("digest")
    # `repo:port/name` has a colon that is not a tag separator.
    if tag is not None and "/" in tag:
        tag = None
    if digest is not None:
        return None
    if tag is None:
        return f"{reference!r} has no tag: pin an exact version (repo:1.2.3) or a digest"
    if tag == "latest":
        return f"{reference!r} uses 'latest': pin an exact version (repo:1.2.3) or a digest"
    return None
