"""The command line: every scheduler setting is a documented flag."""

from __future__ import annotations

import subprocess
import sys

import pytest
from llm_emulator.cli import parse_args
from llm_emulator.durations import FOREVER_NS
from llm_emulator.settings import CATALOG, SchedulerSettings

FLAGS = (
    "--time-scale", "--ollama-defaults", "--num-parallel", "--max-loaded-models",
    "--max-queue", "--keep-alive", "--context-length", "--vram", "--load-base",
    "--load-per-gb", "--unload-time", "--decode-speed", "--prompt-speed",
    "--decode-slowdown", "--model-size", "--model-load-time", "--model-decode-speed",
    "--model-prompt-speed",
)  # fmt: skip


@pytest.mark.process
def test_help_documents_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llm_emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for flag in FLAGS:
        assert flag in result.stdout, flag


def test_no_flags_is_unlimited_and_ollama_defaults_are_ollamas() -> None:
    plain = parse_args([]).scheduler
    assert plain == SchedulerSettings()
    assert (plain.vram_gib, plain.num_parallel, plain.max_loaded_models, plain.max_queue) == (
        0, 0, 0, 0,
    )  # fmt: skip
    assert plain.load_base == plain.load_per_gb == 0
    real = parse_args(["--ollama-defaults"]).scheduler
    assert (real.num_parallel, real.max_loaded_models, real.max_queue) == (1, 3, 512)
    assert real.keep_alive_ns == 300 * 10**9
    assert real.vram_gib == 24
    assert real.decode_speed == real.prompt_speed == CATALOG


def test_flags_override_the_defaults() -> None:
    settings = parse_args([
        "--ollama-defaults", "--time-scale", "20", "--num-parallel", "4", "--vram", "48",
        "--keep-alive", "-1", "--decode-speed", "80", "--model-size", "gemma2:27b=16",
        "--model-size", "qwen2.5:32b=16,llama3.2=2.5", "--model-load-time", "gemma2:27b=8",
    ])  # fmt: skip
    s = settings.scheduler
    assert settings.time_scale == 20
    assert (s.num_parallel, s.vram_gib, s.keep_alive_ns, s.decode_speed) == (
        4, 48, FOREVER_NS, 80,
    )  # fmt: skip
    assert s.max_loaded_models == 3
    assert s.model_sizes == {"gemma2:27b": 16, "qwen2.5:32b": 16, "llama3.2:latest": 2.5}
    assert s.model_load_times == {"gemma2:27b": 8}


@pytest.mark.parametrize(
    ("text", "seconds"), [("5m", 300), ("30", 30), ("1h30m", 5400), ("0", 0), ("-1", None)]
)
def test_keep_alive_reads_like_ollama_keep_alive(text: str, seconds: int | None) -> None:
    keep_alive = parse_args(["--keep-alive", text]).scheduler.keep_alive_ns
    assert keep_alive == (FOREVER_NS if seconds is None else seconds * 10**9)


@pytest.mark.parametrize(
    "argv",
    [
        ["--model-size", "gemma2:27b"],
        ["--model-size", "gemma2:27b=big"],
        ["--model-size", "gemma2:27b=0"],
        ["--num-parallel", "-1"],
        ["--decode-speed", "fast"],
        ["--keep-alive", "soon"],
        ["--time-scale", "0"],
    ],
)
def test_bad_flags_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err
