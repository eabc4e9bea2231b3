"""A shed is the gateway's own refusal: 503 with Retry-After, never an upstream failure."""

from __future__ import annotations

from llm_gateway.replies import failure_error
from llm_gateway.routing.shed import MAX_RETRY_AFTER, Shed, wait_text
from llm_gateway.upstream import UpstreamFailure


def test_a_shed_answers_503_with_retry_after_from_its_estimate() -> None:
    shed = Shed("overloaded", 41.2, "server busy: this request would wait about 42s")
    assert not isinstance(shed, UpstreamFailure)
    error = failure_error(shed)
    assert (error.status, error.message) == (503, "server busy: this request would wait about 42s")
    assert error.headers == {"Retry-After": "42"}


def test_retry_after_is_bounded_both_ways() -> None:
    assert Shed("deadline", 0.1, "").retry_after == 1
    assert Shed("overloaded", float("inf"), "").retry_after == MAX_RETRY_AFTER
    assert wait_text(float("inf")) == "indefinitely"
    assert wait_text(41.2) == "about 42s"
