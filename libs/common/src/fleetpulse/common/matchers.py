"""Label matchers as Prometheus Alertmanager has them (``pkg/labels``), pure.

A matcher is ``{"name": ..., "type": "=" | "!=" | "=~" | "!~", "value": ...}``. Regex matchers
are anchored as Alertmanager anchors them (``^(?:value)$``) and run on RE2 (linear time, no
backtracking: no ReDoS whatever the pattern). A label the alert does not have has the value ``""``
(so ``tags.site!="north"`` matches a device without a ``site`` tag, and ``tags.site=""`` matches
only those). A set of matchers matches when every matcher does.

Alert labels (see :func:`alert_labels`): ``alert_id``, ``rule_id``, ``rule_name``, ``device_id``,
``severity``, ``metric``, ``tags.<key>`` for each device tag and ``attributes.<key>`` for each
device attribute (scalar values as text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2

MATCH_TYPES = ("=", "!=", "=~", "!~")
MAX_VALUE_CHARS = 512
MAX_MATCHERS = 32
ALERT_LABELS = ("alert_id", "rule_id", "rule_name", "device_id", "severity", "metric")
# only the labels an alert has: a misspelt name would make a matcher that silently never matches
LABEL_NAME = re.compile(
    rf"^(?:{'|'.join(ALERT_LABELS)}|(?:tags|attributes)\.[A-Za-z0-9_.\-]{{1,128}})$"
)

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.max_mem = 1 << 20  # a pattern whose automaton needs more is refused
_RE2_OPTIONS.log_errors = False  # the caller gets the error; nothing on stderr


class MatcherError(ValueError):
    """A matcher that cannot be used; ``field`` names it (``matchers[2].value``)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    type: str
    value: str
    _regex: Any = None

    @property
    def is_regex(self) -> bool:
        return self.type in ("=~", "!~")

    @property
    def is_equal(self) -> bool:
        return self.type in ("=", "=~")

    def matches(self, value: str) -> bool:
        hit = self._regex.fullmatch(value) is not None if self.is_regex else value == self.value
        return bool(hit == self.is_equal)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "value": self.value}


def compile_regex(pattern: str) -> Any:
    """The anchored RE2 program of ``pattern``; :class:`ValueError` naming the error."""
    try:
        return re2.compile(f"^(?:{pattern})$", _RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else "unparsable"
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(f"invalid regular expression: {text.split(':')[0]}") from None


def matcher(raw: Mapping[str, Any], field: str = "matcher") -> Matcher:
    """A :class:`Matcher` from its JSON form; :class:`MatcherError` if it is not valid."""
    name, type_, value = raw.get("name"), raw.get("type", "="), raw.get("value")
    name = label_name(name, f"{field}.name")
    if type_ not in MATCH_TYPES:
        raise MatcherError(f"{field}.type", f"one of {', '.join(MATCH_TYPES)}")
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        raise MatcherError(f"{field}.value", f"text of at most {MAX_VALUE_CHARS} characters")
    if type_ in ("=~", "!~"):
        try:
            return Matcher(name, type_, value, compile_regex(value))
        except ValueError as error:
            raise MatcherError(f"{field}.value", str(error)) from None
    return Matcher(name, type_, value)


def matchers(
    raw: Sequence[Mapping[str, Any]], field: str = "matchers", *, may_match_all: bool = False
) -> tuple[Matcher, ...]:
    """Validate a silence's (or inhibit rule's) matchers as Alertmanager does: at least one,
    each valid, and (for a silence, unless ``may_match_all``) not all of them matching the
    empty string (that would match everything)."""
    if not raw:
        raise MatcherError(field, "at least one matcher is required")
    if len(raw) > MAX_MATCHERS:
        raise MatcherError(field, f"at most {MAX_MATCHERS} matchers")
    parsed = tuple(matcher(m, f"{field}[{i}]") for i, m in enumerate(raw))
    if not may_match_all and all(m.matches("") for m in parsed):
        raise MatcherError(field, "at least one matcher must not match the empty string")
    return parsed


def label_name(name: object, field: str) -> str:
    """A label name (for ``equal`` lists); :class:`MatcherError` if it is not one."""
    if not isinstance(name, str) or not LABEL_NAME.match(name):
        raise MatcherError(
            field, "a label name: rule_id, severity, tags.<key>, attributes.<key>..."
        )
    return name


def parse_stored(raw: Iterable[Mapping[str, Any]]) -> tuple[Matcher, ...] | None:
    """Matchers read back from storage; None if any no longer compiles (then match nothing)."""
    try:
        return tuple(matcher(m) for m in raw)
    except MatcherError:
        return None


def matches_all(parsed: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels.get(m.name, "")) for m in parsed)


def alert_labels(
    alert: Mapping[str, Any],
    tags: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The labels matchers see for an alert (its event data or row) and its device."""
    labels = {k: str(alert[k]) for k in ALERT_LABELS if alert.get(k) is not None}
    labels.update({f"tags.{k}": str(v) for k, v in (tags or {}).items()})
    labels.update(
        {
            f"attributes.{k}": _text(v)
            for k, v in (attributes or {}).items()
            if v is None or isinstance(v, str | int | float | bool)
        }
    )
    return labels


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
