"""Model sizes: the built-in figures and overrides."""

from __future__ import annotations

from llm_emulator.catalog import Catalog, spec_for


def test_known_sizes_as_ollama_lists_them() -> None:
    gb = {name: round(spec_for(name).size / 1e9, 1) for name in (
        "llama3.2:1b", "llama3.2:latest", "llama3.1:8b", "nomic-embed-text:latest",
        "all-minilm:latest", "qwen2.5:14b", "gemma2:27b", "qwen2.5:32b",
    )}  # fmt: skip
    assert gb == {
        "llama3.2:1b": 1.3,
        "llama3.2:latest": 2.0,
        "llama3.1:8b": 4.9,
        "nomic-embed-text:latest": 0.3,
        "all-minilm:latest": 0.0,
        "qwen2.5:14b": 9.0,
        "gemma2:27b": 15.6,
        "qwen2.5:32b": 19.9,
    }


def test_overridden_size_keeps_a_known_architecture_and_scales_an_unknown_one() -> None:
    gemma = spec_for("gemma2:27b", 16_000_000_000)
    assert gemma.size == 16_000_000_000
    assert gemma.kv_bytes_per_token == spec_for("gemma2:27b").kv_bytes_per_token
    small, big = spec_for("mystery:1b", 1_000_000_000), spec_for("mystery:70b", 40_000_000_000)
    assert small.kv_bytes_per_token < big.kv_bytes_per_token
    assert small.decode_tps > big.decode_tps > 0


def test_catalog_applies_sizes_to_listing() -> None:
    catalog = Catalog(("gemma2:27b", "llama3.2"), sizes={"gemma2:27b": 16_000_000_000})
    entry = catalog.lookup("gemma2:27b")
    assert entry is not None
    assert entry.spec.size == 16_000_000_000
