"""The guards refuse what embeddings do not see, and never a text against itself.

The examples here are not from the labelled set (bench/semantic/pairs.tsv), whose
numbers tests/bench/test_semantic_eval.py checks with the real model.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llm_gateway.cache.semantic_guards import GUARDS, features, refusal, tokens
from llm_gateway.cache.semantic_match import DEFAULT_THRESHOLD, Verdict, cosine, judge

from bench.semantic.pairs import load


def refused(a: str, b: str) -> str | None:
    return refusal(features(a), features(b))


def test_tokens_split_contractions_possessives_and_sizes() -> None:
    words = [w for w, _ in tokens("Don't resize Canada's 800x600 3-day image by 15%!")]
    assert words == ["do", "not", "resize", "canada", "800", "600", "3", "day", "image", "by",
                     "15", "%"]  # fmt: skip


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        ("How many hours is 90 minutes?", "How many hours is 45 minutes?", "numbers"),
        ("Give me seven ideas for a party.", "Give me 9 ideas for a party.", "numbers"),
        ("Subtract 3 from 8.", "Subtract 8 from 3.", "numbers"),
        ("How heavy is 3 kg of rice in lbs?", "How heavy is 3 lbs of rice in kg?", "numbers"),
        ("How many cups are in a liter?", "How many cups are in a gallon?", "units"),
        ("Is it rude to tip in Japan?", "Is it not rude to tip in Japan?", "negation"),
        ("Can I travel with a passport?", "Can I travel without a passport?", "negation"),
        ("Why do cats like boxes?", "Why don't cats like boxes?", "negation"),
        ("Turn a tuple into a dict.", "Turn a dict into a tuple.", "direction"),
        ("Drive from Lyon to Nice.", "Drive from Nice to Lyon.", "direction"),
        ("Are trains greener than planes?", "Are planes greener than trains?", "comparison"),
        ("tabs vs spaces for indentation", "spaces vs tabs for indentation", "comparison"),
        ("How do I lock the screen?", "How do I unlock the screen?", "opposites"),
        ("Show the oldest files first.", "Show the oldest files last.", "opposites"),
        ("How do I learn Kotlin fast?", "How do I learn Scala fast?", "names"),
    ],
)
def test_each_guard_refuses_what_it_is_for(a: str, b: str, guard: str) -> None:
    assert refused(a, b) == guard
    assert refused(b, a) == guard


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How many hours is 90 minutes?", "90 minutes is how many hours?"),
        ("Give me seven ideas for a party.", "Give me 7 ideas for a party."),
        ("Why don't cats like boxes?", "Why do cats not like boxes?"),
        ("Drive from Lyon to Nice.", "What's the best drive from Lyon to Nice?"),
        ("Drive from Lyon to Nice.", "Drive to Nice from Lyon."),
        ("Are trains greener than planes?", "Are trains more eco-friendly than planes?"),
        ("How do I learn Kotlin fast?", "what's the quickest way to learn kotlin?"),
        ("Convert 5 kilometres to miles.", "Convert 5 km to miles."),
    ],
)
def test_guards_let_these_paraphrases_through(a: str, b: str) -> None:
    assert refused(a, b) is None
    assert refused(b, a) is None


def test_no_text_is_refused_against_itself_and_guards_are_symmetric() -> None:
    for pair in load():
        for text in (pair.a, pair.b):
            assert refused(text, text) is None, text
        fa, fb = features(pair.a), features(pair.b)
        for name, guard in GUARDS.items():
            assert guard(fa, fb) == guard(fb, fa), (name, pair)


@given(st.text(max_size=200))
def test_any_text_reads_and_matches_itself(text: str) -> None:
    f = features(text)
    assert refusal(f, f) is None


def test_judge_needs_the_threshold_and_no_refusal() -> None:
    a, b = features("Is tea healthier than coffee?"), features("Is coffee healthier than tea?")
    para = features("Is tea healthier than coffee for me?")
    assert judge(0.99, a, b) == Verdict(0.99, "comparison", False)
    assert judge(0.99, a, b, guards=()).hit  # the threshold alone would serve it
    assert judge(DEFAULT_THRESHOLD, a, para).hit
    below = judge(DEFAULT_THRESHOLD - 0.01, a, para)
    assert not below.hit
    assert below.near_miss(DEFAULT_THRESHOLD)
    assert not judge(0.5, a, para).near_miss(DEFAULT_THRESHOLD)


def test_cosine() -> None:
    assert cosine([1.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.0)
    assert cosine([3.0, 4.0], [6.0, 8.0]) == pytest.approx(1.0)
    assert cosine([], []) == 0.0
    assert cosine([1.0], [1.0, 0.0]) == 0.0
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
