"""``logah compare``'s figure: legend labels."""

from __future__ import annotations

from logah.report.plot import short_names


def test_legend_drops_the_shared_prefix():
    assert short_names(["exp-gpt-random", "exp-gpt-logah-t"]) == {
        "exp-gpt-random": "random", "exp-gpt-logah-t": "logah-t"}
    assert short_names(["a", "b"]) == {"a": "a", "b": "b"}
    assert short_names(["x-1", "x-"]) == {"x-1": "x-1", "x-": "x-"}  # nothing would be left
    assert short_names(["only-one"]) == {"only-one": "only-one"}
