"""``fleetpulse.testing.grafana`` renders SQL as Grafana does: the SQL data source's variable
formatting (templateSrv + interpolateVariable) and the postgres macro engine (macros.go), on the
cases Grafana's own tests and docs name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetpulse.testing import grafana
from fleetpulse.testing.grafana import ALL, MacroError, Selection, TimeRange, Variable

START = datetime(2026, 11, 30, 10, 0, 0, 500000, tzinfo=UTC)
END = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
RANGE = TimeRange(START, END)

single = Variable("host", "q")
multi = Variable("tenant", "q", multi=True, include_all=True)
custom_all = Variable("tenant", "q", multi=True, include_all=True, all_value="'__all'")


def render(
    sql: str, variable: Variable, value: str | list[str], *, timescaledb: bool = False
) -> str:
    selection = Selection(values={variable.name: value}, options={variable.name: ["a", "o'b"]})
    return grafana.render(sql, [variable], selection, RANGE, timescaledb=timescaledb)


def test_a_single_value_goes_in_unquoted_with_quotes_doubled() -> None:
    assert render("x = $host", single, "web") == "x = web"
    assert render("x = '$host'", single, "o'b") == "x = 'o''b'"
    # the fault the dashboards had: an unquoted comparison with a text value
    assert render("$host = '__all'", single, "__all") == "__all = '__all'"


def test_multi_or_include_all_values_are_quoted_and_joined() -> None:
    assert render("t IN ($tenant)", multi, ["a"]) == "t IN ('a')"
    assert render("t IN ($tenant)", multi, ["a", "o'b"]) == "t IN ('a','o''b')"
    assert render("t IN (${tenant})", multi, "a") == "t IN ('a')"
    assert render("t IN ([[tenant]])", multi, ["a"]) == "t IN ('a')"


def test_all_is_every_option_or_the_custom_all_value_raw() -> None:
    assert render("t IN ($tenant)", multi, ALL) == "t IN ('a','o''b')"
    assert render("t IN ($tenant)", multi, [ALL]) == "t IN ('a','o''b')"
    assert render("'__all' IN ($tenant)", custom_all, ALL) == "'__all' IN ('__all')"
    assert render("'__all' IN ($tenant)", custom_all, ["a"]) == "'__all' IN ('a')"


def test_formats() -> None:
    assert render("${tenant:csv}", multi, ["a", "b"]) == "a,b"
    assert render("${tenant:sqlstring}", multi, ["a", "o'b"]) == "'a','o''b'"
    assert render("${tenant:raw}", multi, ["a"]) == "a"
    with pytest.raises(ValueError, match="not supported"):
        render("${tenant:regex}", multi, ["a"])


def test_unknown_variables_stay_and_builtins_are_replaced() -> None:
    selection = Selection()
    out = grafana.render(
        "$nope $__interval ${__interval_ms} $__from",
        [],
        selection,
        RANGE,
        timescaledb=False,
        interval=timedelta(seconds=30),
    )
    assert out == f"$nope 30s 30000 {int(START.timestamp() * 1000)}"


def test_time_macros_as_macros_go() -> None:
    assert grafana.expand_macros("$__timeFilter(time)", START, END, timescaledb=False) == (
        "time BETWEEN '2026-11-30T10:00:00.5Z' AND '2026-11-30T11:00:00Z'"
    )
    assert grafana.expand_macros("$__timeFrom()", START, END, timescaledb=False) == (
        "'2026-11-30T10:00:00.5Z'"
    )
    assert grafana.expand_macros("$__timeGroup(t, '5m')", START, END, timescaledb=False) == (
        "floor(extract(epoch from t)/300)*300"
    )
    assert grafana.expand_macros("$__timeGroupAlias(t, 1h)", START, END, timescaledb=True) == (
        "time_bucket('3600.000s',t) AS \"time\""
    )
    # pre-5.3 compatibility: $__timeGroup followed by ',' gets the alias
    assert grafana.expand_macros(
        "SELECT $__timeGroup(t, '1m'), v", START, END, timescaledb=True
    ) == ("SELECT time_bucket('60.000s',t) AS \"time\", v")
    assert grafana.expand_macros("$__time(t)", START, END, timescaledb=False) == 't AS "time"'
    assert grafana.expand_macros("$__unixEpochFilter(e)", START, END, timescaledb=False) == (
        f"e >= {int(START.timestamp())} AND e <= {int(END.timestamp())}"
    )


def test_bad_macros_are_errors_as_in_grafana() -> None:
    with pytest.raises(MacroError, match="unknown macro"):
        grafana.expand_macros("$__nope(x)", START, END, timescaledb=False)
    with pytest.raises(MacroError, match="missing time column"):
        grafana.expand_macros("$__timeFilter()", START, END, timescaledb=False)
    with pytest.raises(MacroError, match="interval"):
        grafana.expand_macros("$__timeGroup(t, 'often')", START, END, timescaledb=False)


def test_panels_and_variables_come_from_the_dashboard_json() -> None:
    board = {
        "uid": "b",
        "templating": {"list": [{"name": "tenant", "query": "SELECT 1", "includeAll": True}]},
        "panels": [
            {"title": "row", "panels": [{"title": "inner", "targets": [{"rawSql": "SELECT 2"}]}]},
            {"title": "p", "targets": [{"refId": "B", "rawSql": "SELECT 3", "format": "table"}]},
        ],
    }
    assert [v.name for v in grafana.variables(board)] == ["tenant"]
    assert [(p.title, p.sql) for p in grafana.panels(board)] == [
        ("inner", "SELECT 2"),
        ("p", "SELECT 3"),
    ]
