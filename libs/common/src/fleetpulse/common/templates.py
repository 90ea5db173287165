"""Notification templates: Jinja2 in its ``SandboxedEnvironment``, bounded, pure.

Templates are tenant input rendered by the delivery worker, so beyond the sandbox (no private
attributes, no unsafe callables) this module bounds what one rendering can cost:

- ``StrictUndefined``: a name or field the alert does not have is an error (``{{ x |
  default("") }}`` and ``{% if x is defined %}`` work);
- no ``range``, ``namespace``, ``lipsum``, ``cycler``, ``joiner``; no macros, call blocks,
  includes, imports, ``extends`` or recursive loops; ``for`` loops nest at most two deep;
- filters from :data:`FILTERS` only (no ``center``, ``format``, ``indent``, ``wordwrap``,
  ``replace``, ``safe``...); method calls only to :data:`METHODS`;
- ``*``, ``**`` and ``+`` are checked (no huge strings, lists or numbers);
- the output stops with an error past ``max_chars``.

The context is ``alert`` (the notification's ``data``: ``alert_id``, ``rule_id``,
``rule_name``, ``device_id``, ``severity``, ``status`` (firing or resolved), ``value``,
``threshold``, ``reason``, ``opened_at``...), ``alerts`` (the group's alerts, or ``[alert]``),
``type`` (``alert.opened``, ``alert.resolved``...) and ``timestamp``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_SOURCE_CHARS = 8000
MAX_LOOP_DEPTH = 2
MAX_SIZE = 100_000  # characters or items a ``*`` or ``+`` may produce
MAX_INT_BITS = 4096
FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float",
        "int", "join", "last", "length", "list", "lower", "max", "min", "round",
        "string", "sum", "title", "tojson", "trim", "truncate", "unique", "upper",
        "urlencode", "sort", "dictsort", "selectattr", "rejectattr", "map", "select",
        "reject", "batch", "slice", "striptags", "wordcount", "filesizeformat", "items",
    }
)  # fmt: skip
METHODS = frozenset(
    {
        "upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith",
        "endswith", "split", "get", "keys", "values", "items", "isdigit", "count", "index",
        "removeprefix", "removesuffix", "casefold",
    }
)  # fmt: skip
SAMPLE = {
    "type": "alert.opened",
    "timestamp": "2026-01-01T00:00:00+00:00",
    "data": {
        "alert_id": "alert_0123456789",
        "fingerprint": "tenant:rule:device",
        "rule_id": "rule_0123456789",
        "rule_name": "Cold room too warm",
        "device_id": "reefer-7",
        "severity": "major",
        "status": "firing",
        "opened_at": "2026-01-01T00:00:00+00:00",
        "metric": "temp_c",
        "value": 9.5,
        "threshold": 8.0,
        "reason": "temp_c > 8.0",
        "repeat": False,
        "tenant_id": "tenant",
        "route_id": "route_0123456789",
        "group": {"rule_id": "rule_0123456789"},
        "alerts": [],
    },
}


# the output bound of each template field
MAX_OUTPUT = {"subject": 300, "body": 65_536, "body_html": 131_072, "summary": 2000}


class NotificationTemplateError(ValueError):
    """A template that cannot be used or rendered; the message names line and reason."""


class _BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def is_safe_callable(self, obj: Any) -> bool:
        if isinstance(obj, Undefined):
            return True  # calling it raises UndefinedError naming the missing name
        name = getattr(obj, "__name__", "")
        bound_to = getattr(obj, "__self__", None)
        if bound_to is not None and isinstance(bound_to, str | dict | list):
            return name in METHODS and super().is_safe_callable(obj)
        return False


def _check_binop(operator: str, left: Any, right: Any) -> None:
    sized = (str, list, tuple)
    if operator == "**":
        if isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("exponent too large")
    elif operator == "*":
        for a, b in ((left, right), (right, left)):
            if isinstance(a, sized) and isinstance(b, int) and len(a) * b > MAX_SIZE:
                raise SecurityError("result too long")
        ints = isinstance(left, int) and isinstance(right, int)
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("number too large")
    elif isinstance(left, sized) and isinstance(right, sized) and len(left) + len(right) > MAX_SIZE:
        raise SecurityError("result too long")


@functools.cache
def _environment(autoescape: bool) -> _BoundedSandbox:
    env = _BoundedSandbox(undefined=StrictUndefined, autoescape=autoescape)
    for name in ("range", "namespace", "lipsum", "cycler", "joiner", "dict"):
        env.globals.pop(name, None)
    env.filters = {k: v for k, v in env.filters.items() if k in FILTERS}
    env.tests = dict(env.tests)
    return env


_FORBIDDEN = (
    nodes.Macro,
    nodes.CallBlock,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
    nodes.Block,
)


def _check_tree(node: nodes.Node, depth: int = 0) -> None:
    if isinstance(node, _FORBIDDEN):
        raise NotificationTemplateError(
            f"line {node.lineno}: {type(node).__name__.lower()} is not allowed in a template"
        )
    if isinstance(node, nodes.For):
        if node.recursive:
            raise NotificationTemplateError(f"line {node.lineno}: recursive loops are not allowed")
        depth += 1
        if depth > MAX_LOOP_DEPTH:
            raise NotificationTemplateError(
                f"line {node.lineno}: loops nest at most {MAX_LOOP_DEPTH} deep"
            )
    for child in node.iter_child_nodes():
        _check_tree(child, depth)


@functools.lru_cache(maxsize=512)
def compile_template(source: str, *, html: bool = False) -> Any:
    """The compiled template; :class:`NotificationTemplateError` with line and reason."""
    if len(source) > MAX_SOURCE_CHARS:
        raise NotificationTemplateError(f"a template is at most {MAX_SOURCE_CHARS} characters")
    env = _environment(html)
    try:
        _check_tree(env.parse(source))
        return env.from_string(source)
    except TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f"line {line}: " if line else ""
        raise NotificationTemplateError(f"{where}{error.message or type(error).__name__}") from None


def context(payload: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(payload.get("data") or {})
    return {
        "alert": data,
        "alerts": list(data.get("alerts") or [data]),
        "type": payload.get("type", ""),
        "timestamp": payload.get("timestamp", ""),
    }


def render(source: str, payload: Mapping[str, Any], *, max_chars: int, html: bool = False) -> str:
    """``source`` rendered for the notification ``payload`` (``{"type", "timestamp",
    "data"}``), at most ``max_chars`` characters; never raises anything but
    :class:`NotificationTemplateError` (which names the reason)."""
    template = compile_template(source, html=html)
    try:
        return _bounded(template.generate(context(payload)), max_chars)
    except NotificationTemplateError:
        raise
    except TemplateError as error:
        raise NotificationTemplateError(error.message or type(error).__name__) from None
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as error:
        raise NotificationTemplateError(f"{type(error).__name__}: {error}"[:300]) from None


def _bounded(chunks: Iterator[str], max_chars: int) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_chars:
            raise NotificationTemplateError(f"output longer than {max_chars} characters")
        out.append(chunk)
    return "".join(out)


def validate(source: str, *, max_chars: int, html: bool = False) -> None:
    """Compile ``source`` and render it for a sample firing and a sample resolved alert, as
    the API does at create time; :class:`NotificationTemplateError` if either fails."""
    resolved = {**SAMPLE, "data": {**SAMPLE["data"], "status": "resolved"}}  # type: ignore[dict-item]
    for payload in (SAMPLE, resolved):
        render(source, payload, max_chars=max_chars, html=html)
