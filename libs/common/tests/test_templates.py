"""Notification templates: rendering, autoescape only in HTML, and the sandbox's bounds."""

from __future__ import annotations

import time

import pytest

from fleetpulse.common.templates import SAMPLE, NotificationTemplateError, render, validate


def test_renders_the_alert_and_escapes_only_html() -> None:
    payload = {**SAMPLE, "data": {**SAMPLE["data"], "reason": "<b>"}}  # type: ignore[dict-item]
    assert render("{{ alert.reason }} {{ alerts | length }}", payload, max_chars=99) == "<b> 1"
    assert render("{{ alert.reason }}", payload, max_chars=99, html=True) == "&lt;b&gt;"
    assert render("{{ alert.nope | default('-') }}", payload, max_chars=99) == "-"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ alert.nope }}", "nope"),
        ("{{ 'x' * 200000 }}", "too long"),
        ("{{ [1] * 200000 }}", "too long"),
        ("{{ 2 ** 100000 }}", "exponent"),
        ("{{ " + "9" * 1500 + " * " + "9" * 1500 + " }}", "number too large"),
        (
            "{% for a in alerts %}{% for b in alerts %}{% for c in alerts %}{% endfor %}"
            "{% endfor %}{% endfor %}",
            "nest",
        ),
        ("{% for a in alerts recursive %}{{ loop(a) }}{% endfor %}", "recursive"),
        ("{% macro m() %}{{ m() }}{% endmacro %}", "macro"),
        ("{{ range(5) | list }}", "range"),
        ("{% set ns = namespace(x=1) %}{{ ns.x }}", "namespace"),
        ("{{ 'x' | center(100000) }}", "center"),
        ("{{ '%099999d' | format(1) }}", "format"),
        ("{{ 'x'.ljust(100000) }}", "not safely callable"),
        ("{{ alert.__class__.__mro__ }}", "unsafe"),
        ("{{ alert.rule_name }}" * 20, "output longer"),
    ],
)
def test_unbounded_or_unsafe_templates_are_refused(source: str, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(NotificationTemplateError, match=reason):
        validate(source, max_chars=300)
    assert time.perf_counter() - started < 1.0
