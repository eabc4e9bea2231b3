"""What a daily quota's reset may say, bracketed by when its request was sent and answered."""

from __future__ import annotations

DAY = 86400


def assert_counts_to_utc_midnight(seconds: float, sent: float, answered: float) -> None:
    """`seconds` counts down to the UTC midnight after some moment of the request.

    `sent` and `answered` are wall-clock times (time.time()) read just before and after
    it: the gateway decided in between, however slow a busy machine made that. One
    second of slack either way for rounding (Retry-After is whole seconds).
    """
    at_sent = DAY - sent % DAY  # the longest it can say
    at_answered = DAY - answered % DAY  # the shortest
    if at_answered <= at_sent:
        assert at_answered - 1 <= seconds <= at_sent + 1, (seconds, at_answered, at_sent)
    else:  # a UTC midnight passed while the request ran: either day's count is right
        assert seconds <= at_sent + 1 or seconds >= at_answered - 1, (seconds, sent, answered)
