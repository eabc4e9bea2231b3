"""Shared fixtures: real servers on loopback, started and stopped by the tests."""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.emulator",
    "tests.support.gateway",
    "tests.support.nginx_server",
]
