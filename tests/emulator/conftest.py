"""A raw httpx client on the session emulator, for the emulator's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.emulator import Emulator


@pytest.fixture
def http(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=10.0) as client:
        yield client
