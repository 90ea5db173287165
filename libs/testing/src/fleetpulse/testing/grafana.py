"""Render a provisioned dashboard's SQL exactly as Grafana's PostgreSQL data source does.

Two stages, as in Grafana:

1. the frontend's template service (``templateSrv.replace`` with the SQL data source's
   ``interpolateVariable``) substitutes dashboard variables: ``$var``, ``${var}``, ``${var:fmt}``
   and ``[[var]]``. A single value of a variable that is neither multi nor include-all goes in as
   it is (quotes doubled, no surrounding quotes); a value of a multi or include-all variable is
   quoted (``'v'``), several values are quoted and joined with ``,``. ``All`` is the variable's
   custom all value inserted raw (not quoted, itself interpolated), or without one every option's
   value, quoted and joined.
2. the backend's macro engine (``pkg/tsdb/grafana-postgresql-datasource/macros.go``) expands
   ``$__timeFilter(col)``, ``$__timeFrom()``, ``$__timeTo()``, ``$__timeGroup(col, '5m')``,
   ``$__timeGroupAlias``, ``$__time``, ``$__timeEpoch`` and the ``$__unixEpoch*`` macros;
   ``$__timeGroup`` becomes ``time_bucket('300.000s',col)`` when the data source has
   ``timescaledb: true``, ``floor(extract(epoch from col)/300)*300`` otherwise. An unknown macro is
   an error, as in Grafana.

Built-in variables ``$__interval``, ``$__interval_ms``, ``$__from``, ``$__to`` and ``$__range_s``
are replaced before macros, as the frontend does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ALL = "$__all"

# templateSrv's variable regex: $var | [[var(:fmt)]] | ${var(.path)(:fmt)}
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)
# macros.go: \$([_a-zA-Z0-9]+)\(([^\)]*)\)
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class MacroError(ValueError):
    """A macro Grafana would refuse (unknown name, missing argument, bad interval)."""


@dataclass(frozen=True, slots=True)
class Variable:
    """One entry of a dashboard's ``templating.list``."""

    name: str
    query: str
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Variable:
        query = raw.get("query", "")
        if isinstance(query, Mapping):  # newer schema: {"rawSql": ...} or {"query": ...}
            query = query.get("rawSql") or query.get("query") or ""
        return cls(
            name=str(raw["name"]),
            query=str(query),
            multi=bool(raw.get("multi")),
            include_all=bool(raw.get("includeAll")),
            all_value=raw.get("allValue") or None,
        )


@dataclass
class Selection:
    """What the dashboard has selected: per variable ``ALL``, one value or several, plus the
    options each query variable returned (``All`` without a custom all value needs them)."""

    values: dict[str, str | list[str]] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)


def quote_literal(value: str) -> str:
    """PostgresQueryModel.quoteLiteral."""
    return "'" + value.replace("'", "''") + "'"


def _format(value: str | list[str], variable: Variable, fmt: str | None) -> str:
    if not fmt:
        # the SQL data source's interpolateVariable
        if isinstance(value, str):
            if variable.multi or variable.include_all:
                return quote_literal(value)
            return value.replace("'", "''")
        return ",".join(quote_literal(v) for v in value)
    values = [value] if isinstance(value, str) else value
    if fmt == "sqlstring":
        return ",".join(quote_literal(v) for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "raw":
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    raise ValueError(f"variable format {fmt!r} is not supported by this renderer")


def interpolate(
    sql: str,
    variables: Sequence[Variable],
    selection: Selection,
    builtins: Mapping[str, str] | None = None,
) -> str:
    """Stage 1: the frontend's variable substitution (unknown names are left as they are)."""
    index = {v.name: v for v in variables}
    builtin = dict(builtins or {})

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name in builtin:
            return builtin[name]
        variable = index.get(name)
        if variable is None:
            return match.group(0)
        value = selection.values.get(name)
        if value is None:
            raise KeyError(f"no value selected for variable {name}")
        if value == ALL or (isinstance(value, list) and value[:1] == [ALL]):
            if variable.all_value and fmt not in ("text", "percentencode"):
                return interpolate(variable.all_value, variables, selection, builtin)
            value = list(selection.options.get(name, []))
        return _format(value, variable, fmt)

    return _VARIABLE.sub(replace, sql)


def _rfc3339(moment: datetime) -> str:
    # Go's time.RFC3339Nano: trailing zeros of the fraction dropped, Z for UTC
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def parse_interval(text: str) -> timedelta:
    """gtime.ParseInterval for the forms dashboards use (``500ms``, ``1m``, ``1h``, ``1d``)."""
    match = _INTERVAL.match(text.strip().strip("'"))
    if match is None:
        raise MacroError(f"error parsing interval {text}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def _go_float(value: float) -> str:
    # fmt %v of a float64: shortest representation, no trailing .0
    return repr(int(value)) if value == int(value) else repr(value)


def _macro(name: str, args: list[str], start: datetime, end: datetime, timescaledb: bool) -> str:
    def column() -> str:
        if not args or args == [""]:
            raise MacroError(f"missing time column argument for macro {name}")
        return args[0]

    if name == "__time":
        return f'{column()} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {column()}) as "time"'
    if name == "__timeFilter":
        return f"{column()} BETWEEN '{_rfc3339(start)}' AND '{_rfc3339(end)}'"
    if name == "__timeFrom":
        return f"'{_rfc3339(start)}'"
    if name == "__timeTo":
        return f"'{_rfc3339(end)}'"
    if name in ("__timeGroup", "__timeGroupAlias", "__unixEpochGroup", "__unixEpochGroupAlias"):
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        seconds = parse_interval(args[1]).total_seconds()
        if name.startswith("__unixEpoch"):
            group = f"floor(({args[0]})/{_go_float(seconds)})*{_go_float(seconds)}"
        elif timescaledb:
            group = f"time_bucket('{seconds:.3f}s',{args[0]})"
        else:
            group = (
                f"floor(extract(epoch from {args[0]})/{_go_float(seconds)})*{_go_float(seconds)}"
            )
        return group + ' AS "time"' if name.endswith("Alias") else group
    if name == "__unixEpochFilter":
        col = column()
        return f"{col} >= {int(start.timestamp())} AND {col} <= {int(end.timestamp())}"
    if name == "__unixEpochNanoFilter":
        col = column()
        return f"{col} >= {_nanos(start)} AND {col} <= {_nanos(end)}"
    if name == "__unixEpochNanoFrom":
        return str(_nanos(start))
    if name == "__unixEpochNanoTo":
        return str(_nanos(end))
    raise MacroError(f"unknown macro {name!r}")


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def expand_macros(sql: str, start: datetime, end: datetime, *, timescaledb: bool) -> str:
    """Stage 2: the backend's postgres macro engine."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        # pre-5.3 compatibility: $__timeGroup(...) directly followed by ',' adds AS "time"
        if name == "__timeGroup":
            at = sql.find(match.group(0))
            after = at + len(match.group(0))
            if at >= 0 and after < len(sql) and sql[after] == ",":
                name = "__timeGroupAlias"
        args = [a.strip(" ") for a in match.group(2).split(",")]
        return _macro(name, args, start, end, timescaledb)

    return _MACRO.sub(replace, sql)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime

    def builtins(self, interval: timedelta) -> dict[str, str]:
        seconds = interval.total_seconds()
        text = f"{int(seconds)}s" if seconds >= 1 else f"{int(seconds * 1000)}ms"
        return {
            "__interval": text,
            "__interval_ms": str(int(seconds * 1000)),
            "__from": str(int(self.start.timestamp() * 1000)),
            "__to": str(int(self.end.timestamp() * 1000)),
            "__range_s": str(int((self.end - self.start).total_seconds())),
        }


def render(
    sql: str,
    variables: Sequence[Variable],
    selection: Selection,
    time_range: TimeRange,
    *,
    timescaledb: bool,
    interval: timedelta = timedelta(minutes=1),
) -> str:
    """The SQL Grafana sends to PostgreSQL for ``sql`` (a panel target's ``rawSql``)."""
    text = interpolate(sql, variables, selection, time_range.builtins(interval))
    return expand_macros(text, time_range.start, time_range.end, timescaledb=timescaledb)


@dataclass(frozen=True, slots=True)
class Panel:
    dashboard: str
    title: str
    ref_id: str
    sql: str
    format: str


def panels(board: Mapping[str, Any]) -> list[Panel]:
    """Every SQL target of every panel (rows' nested panels included)."""
    found: list[Panel] = []

    def walk(items: Sequence[Mapping[str, Any]]) -> None:
        for panel in items:
            walk(panel.get("panels") or [])
            for target in panel.get("targets") or []:
                if target.get("rawSql"):
                    found.append(
                        Panel(
                            str(board.get("uid") or board.get("title")),
                            str(panel.get("title", "")),
                            str(target.get("refId", "A")),
                            str(target["rawSql"]),
                            str(target.get("format", "time_series")),
                        )
                    )

    walk(board.get("panels") or [])
    return found


def variables(board: Mapping[str, Any]) -> list[Variable]:
    return [Variable.from_json(v) for v in (board.get("templating") or {}).get("list", [])]
