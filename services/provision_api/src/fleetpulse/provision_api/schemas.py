"""Request and response bodies of the HTTP API (contract names from ARCHITECTURE "HTTP API")."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from fleetpulse.common.contracts import DeviceRegistered
from fleetpulse.common.contracts.constants import ID_PATTERN, METRIC_PATTERN
from fleetpulse.common.rules.conditions import (
    Condition,
    InvalidConditionError,
    schedule_from,
)
from fleetpulse.common.templates import MAX_OUTPUT, MAX_SOURCE_CHARS, NotificationTemplateError
from fleetpulse.common.templates import validate as validate_template
from fleetpulse.common.windows import MAX_DURATION_S, WindowError, window

T = TypeVar("T")


def storable(value: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates: refuse them as validation errors."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode") from None
    return value


def one_line(value: str) -> str:
    """Names reach mail subjects, headers and topics: no control characters (CR, LF, TAB, ...)
    and no Unicode line or paragraph separators."""
    if any(unicodedata.category(c) in _NOT_IN_A_LINE for c in value):
        raise ValueError("must not contain control characters or line breaks")
    return value


_NOT_IN_A_LINE = frozenset({"Cc", "Zl", "Zp", "Cs"})

# Every time the API accepts is converted to UTC inside these bounds (with room for the windows
# and defaults computed from it), so arithmetic and PostgreSQL never overflow: out of range is a 422.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def in_range(value: datetime) -> datetime:
    """``value`` in UTC (a naive time is taken as UTC), or ValueError outside EARLIEST..LATEST."""
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year} (UTC)")
    return moment


Moment = Annotated[datetime, AfterValidator(in_range)]
Text = Annotated[str, AfterValidator(storable)]
Line = Annotated[Text, AfterValidator(one_line)]

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Name = Annotated[Line, StringConstraints(min_length=1, max_length=200)]
TagKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
TagValue = Annotated[Line, StringConstraints(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=32)]
Metric = Annotated[str, StringConstraints(pattern=METRIC_PATTERN)]
AttributeKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
AttributeValue = (
    Annotated[Line, StringConstraints(max_length=256)]
    | bool
    | Annotated[float, Field(allow_inf_nan=False, ge=-1e15, le=1e15)]
)
Attributes = Annotated[dict[AttributeKey, AttributeValue], Field(max_length=64)]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e15, le=1e15)]
Severity = Literal["critical", "major", "minor", "warning", "info"]
Operator = Literal["gt", "gte", "lt", "lte", "eq", "ne"]
Seconds = Annotated[int, Field(ge=0, le=30 * 86400)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page"
    )


class EventOut(BaseModel):
    event_id: str
    type: str = Field(examples=[DeviceRegistered.TYPE])
    version: int
    position: int
    data: dict[str, Any]
    actor: str | None
    recorded_at: datetime


# --- tenants -------------------------------------------------------------------------------


class TenantCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tenant_id": "acme", "name": "Acme Logistics"}]},
    )
    tenant_id: Id
    name: Name


class Tenant(BaseModel):
    tenant_id: str
    name: str
    created_at: datetime
    version: int


# --- devices -------------------------------------------------------------------------------


class DeviceCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "device_id": "truck-042",
                    "name": "Reefer truck 42",
                    "tags": {"site": "berlin", "kind": "reefer"},
                }
            ]
        },
    )
    device_id: Id
    name: Name | None = None
    tags: Tags = Field(default_factory=dict)


class DevicePatch(Strict):
    """Fields to change; those left out keep their value (``name: null`` clears the name)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "Reefer 42", "attributes": {"max_temp_c": 8, "site": "berlin"}}]
        },
    )
    name: Name | None = None
    tags: Tags | None = Field(default=None, description="Replaces every tag")
    attributes: Attributes | None = Field(
        default=None,
        description="Replaces every attribute (strings, numbers, booleans); rules read them "
        "with threshold_from: attributes.<key>",
    )


class Device(BaseModel):
    device_id: str
    name: str | None
    tags: dict[str, str]
    attributes: dict[str, Any] = Field(default_factory=dict)
    status: Literal["active", "decommissioned"]
    credentials_version: int
    registered_at: datetime
    decommissioned_at: datetime | None
    updated_at: datetime
    version: int
    connectivity: Literal["online", "stale", "offline"] = Field(
        default="offline",
        description="From last_seen: online within FLEETPULSE_DEVICE_ONLINE_S, stale within "
        "FLEETPULSE_DEVICE_STALE_S, else (or never seen) offline",
    )
    last_seen: datetime | None = Field(
        default=None, description="Last telemetry or heartbeat received"
    )
    last_reading_at: datetime | None = None
    last_heartbeat: datetime | None = None
    last_values: dict[str, float | bool] = Field(
        default_factory=dict,
        description="The latest value of each metric",
        examples=[{"temp_c": 4.5, "door_open": False}],
    )


class MqttCredentials(BaseModel):
    host: str
    port: int
    client_id: str
    username: str | None
    password: str | None = Field(description="Shown once; FleetPulse keeps no copy")
    topic_prefix: str = Field(examples=["tenant/acme/device/truck-042/"])
    certificate_pem: str | None = Field(default=None, description="AWS IoT Core only")
    private_key: str | None = Field(default=None, description="AWS IoT Core only; shown once")


class DeviceWithCredentials(Device):
    mqtt: MqttCredentials


# --- rules ---------------------------------------------------------------------------------


class DeviceSelector(Strict):
    tags: Tags = Field(default_factory=dict)


class SelectorPreview(Strict):
    model_config = ConfigDict(extra="forbid")
    device_selector: DeviceSelector = Field(default_factory=lambda: DeviceSelector())


class SelectorMatches(BaseModel):
    matched_devices: int = Field(description="Active devices the selector matches")


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ClockTime = Annotated[str, StringConstraints(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]


class ScheduleWindowIn(Strict):
    days: Annotated[list[Day], Field(min_length=1, max_length=7)] = Field(
        default_factory=lambda: list(ALL_DAYS)
    )
    start: ClockTime = Field(examples=["08:00"])
    end: ClockTime = Field(
        examples=["18:00"], description="Exclusive; before start: runs past midnight"
    )


class ScheduleIn(Strict):
    """Weekly windows of local wall-clock time in an IANA zone (DST-correct); outside them the
    rule's condition does not hold (a pending one is dropped, a firing alert resolves)."""

    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        examples=["Europe/Berlin"]
    )
    windows: Annotated[list[ScheduleWindowIn], Field(min_length=1, max_length=50)]

    @model_validator(mode="after")
    def _valid(self) -> ScheduleIn:
        schedule_from(self.model_dump())  # ValueError: unknown zone, start == end
        return self


AttributePath = Annotated[str, StringConstraints(pattern=r"^attributes\.[A-Za-z0-9_.-]{1,64}$")]


class ConditionIn(Strict):
    """One metric: its ``last`` value, an aggregate over ``window_s`` (``avg``, ``min``,
    ``max``, ``count``) or its ``rate`` of change (``rate_per``: ``second`` or ``window``),
    compared with ``threshold`` or a device attribute (``threshold_from``, ``default`` when the
    device lacks it); ``clear_threshold``: the bound while firing (hysteresis)."""

    metric: Metric
    operator: Operator
    threshold: Finite | None = None
    threshold_from: AttributePath | None = Field(default=None, examples=["attributes.max_temp_c"])
    default: Finite | None = None
    clear_threshold: Finite | None = None
    aggregate: Literal["last", "avg", "min", "max", "count", "rate"] = "last"
    window_s: Annotated[int, Field(ge=1, le=3600)] | None = None
    rate_per: Literal["second", "window"] = "second"

    @model_validator(mode="after")
    def _possible(self) -> ConditionIn:
        try:
            Condition(**self.model_dump())
        except InvalidConditionError as exc:
            raise ValueError(str(exc)) from None
        return self


Conditions = Annotated[list[ConditionIn], Field(min_length=1, max_length=10)]


class ConditionRuleIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Reefer warming up",
                    "kind": "condition",
                    "all": [
                        {
                            "metric": "temp_c",
                            "aggregate": "avg",
                            "window_s": 300,
                            "operator": "gt",
                            "threshold_from": "attributes.max_temp_c",
                            "default": 8,
                        },
                        {"metric": "door_open", "operator": "eq", "threshold": 0},
                    ],
                    "duration_s": 60,
                    "severity": "major",
                }
            ]
        },
    )
    name: Name
    kind: Literal["condition"]
    all: Conditions | None = Field(default=None, description="Every condition holds")
    any: Conditions | None = Field(default=None, description="At least one condition holds")
    duration_s: Seconds = 0
    severity: Severity
    device_selector: DeviceSelector = Field(default_factory=DeviceSelector)
    schedule: ScheduleIn | None = None
    enabled: bool = True

    @model_validator(mode="after")
    def _one_combinator(self) -> ConditionRuleIn:
        if (self.all is None) == (self.any is None):
            raise ValueError("give exactly one of all and any")
        return self


class ThresholdRuleIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Reefer too warm",
                    "kind": "threshold",
                    "metric": "temp_c",
                    "operator": "gt",
                    "threshold": 8.0,
                    "clear_threshold": 6.5,
                    "duration_s": 300,
                    "severity": "major",
                    "device_selector": {"tags": {"kind": "reefer"}},
                }
            ]
        },
    )
    name: Name
    kind: Literal["threshold"]
    metric: Metric
    operator: Operator
    threshold: Finite
    clear_threshold: Finite | None = None
    duration_s: Seconds = 0
    severity: Severity
    device_selector: DeviceSelector = Field(default_factory=DeviceSelector)
    schedule: ScheduleIn | None = None
    enabled: bool = Field(
        default=True,
        description="false: kept but not evaluated; its open alerts resolve (rule_disabled)",
    )


class NoDataRuleIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Silent device",
                    "kind": "no_data",
                    "timeout_s": 900,
                    "severity": "warning",
                }
            ]
        },
    )
    name: Name
    kind: Literal["no_data"]
    timeout_s: Annotated[int, Field(ge=1, le=30 * 86400)]
    severity: Severity
    device_selector: DeviceSelector = Field(default_factory=DeviceSelector)
    enabled: bool = Field(
        default=True,
        description="false: kept but not evaluated; its open alerts resolve (rule_disabled)",
    )


RuleIn = Annotated[ThresholdRuleIn | NoDataRuleIn | ConditionRuleIn, Field(discriminator="kind")]


class Rule(BaseModel):
    rule_id: str
    name: str
    kind: Literal["threshold", "no_data", "condition"]
    severity: Severity
    metric: str | None = None
    operator: Operator | None = None
    threshold: float | None = None
    clear_threshold: float | None = None
    duration_s: int | None = None
    timeout_s: int | None = None
    all: list[dict[str, Any]] | None = None
    any: list[dict[str, Any]] | None = None
    schedule: dict[str, Any] | None = None
    device_selector: dict[str, Any]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    version: int


# --- maintenance windows -------------------------------------------------------------------

WindowText = Annotated[Line, StringConstraints(min_length=1, max_length=500)]


class MaintenanceWindowIn(Strict):
    """Recurring (``rrule`` or ``cron``, with ``time_zone`` and ``duration_s``) or absolute
    (``start`` and ``end``); firing notifications inside one are suppressed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2;BYMINUTE=0",
                    "time_zone": "Europe/Berlin",
                    "duration_s": 7200,
                },
                {"cron": "0 2 * * 6", "time_zone": "Europe/Berlin", "duration_s": 7200},
                {"start": "2026-12-24T00:00:00Z", "end": "2026-12-27T00:00:00Z"},
            ]
        },
    )
    rrule: WindowText | None = Field(
        None, description="RFC 5545 RRULE value (FREQ DAILY, WEEKLY, MONTHLY or YEARLY)"
    )
    cron: WindowText | None = Field(None, description="Five-field cron expression")
    time_zone: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="IANA time zone of the occurrences' wall-clock times"
    )
    duration_s: Annotated[int, Field(ge=1, le=MAX_DURATION_S)] | None = None
    dtstart: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        None, description="Local wall-clock anchor of an RRULE (default 2020-01-01T00:00)"
    )
    start: Moment | None = None
    end: Moment | None = None

    @model_validator(mode="after")
    def _usable(self) -> MaintenanceWindowIn:
        try:
            window(self.model_dump(mode="json", exclude_none=True))
        except WindowError as error:
            raise ValueError(str(error)) from None
        return self


MaintenanceWindows = Annotated[list[MaintenanceWindowIn], Field(max_length=20)]


# --- notification templates ----------------------------------------------------------------

TemplateSource = Annotated[Text, StringConstraints(min_length=1, max_length=MAX_SOURCE_CHARS)]


def _templates_usable(model: BaseModel) -> None:
    """Compile and test-render every template (sample firing and resolved alerts)."""
    for name, source in model.model_dump(exclude_none=True).items():
        try:
            validate_template(source, max_chars=MAX_OUTPUT[name], html=name.endswith("_html"))
        except NotificationTemplateError as error:
            raise ValueError(f"templates.{name}: {error}") from None


class EmailTemplates(Strict):
    """Jinja2 (sandboxed) templates of an email notification; the context is ``alert``,
    ``alerts``, ``type`` and ``timestamp``. A field an alert may lack needs ``| default``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "subject": "[{{ alert.severity | upper }}] {{ alert.rule_name }} on "
                    "{{ alert.device_id }}",
                    "body": "{{ alert.reason }} (value {{ alert.value | default('n/a') }})",
                }
            ]
        },
    )
    subject: TemplateSource | None = None
    body: TemplateSource | None = None
    body_html: TemplateSource | None = Field(None, description="HTML part (autoescaped)")

    @model_validator(mode="after")
    def _usable(self) -> EmailTemplates:
        _templates_usable(self)
        return self


class WebhookTemplates(Strict):
    summary: TemplateSource | None = Field(
        None, description="Rendered into the payload's data.summary"
    )

    @model_validator(mode="after")
    def _usable(self) -> WebhookTemplates:
        _templates_usable(self)
        return self


# --- integrations --------------------------------------------------------------------------

HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")]
HeaderValue = Annotated[str, StringConstraints(max_length=1024, pattern=r"^[\t\x20-\x7e]*$")]
HttpUrl = Annotated[
    Text, StringConstraints(pattern=r"^https?://[^\s/$.?#][^\s]*$", max_length=2048)
]
Email = Annotated[Line, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$")]
MqttTopic = Annotated[Line, StringConstraints(min_length=1, max_length=1024)]
SnsArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
]


class WebhookIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "On-call webhook",
                    "kind": "webhook",
                    "url": "https://hooks.example.com/fleet",
                    "headers": {"X-Team": "ops"},
                }
            ]
        },
    )
    name: Name
    kind: Literal["webhook"]
    url: HttpUrl
    headers: Annotated[dict[HeaderName, HeaderValue], Field(max_length=20)] = Field(
        default_factory=dict
    )
    maintenance_windows: MaintenanceWindows | None = None
    templates: WebhookTemplates | None = None


class EmailIn(Strict):
    name: Name
    kind: Literal["email"]
    to: Annotated[list[Email], Field(min_length=1, max_length=50)]
    maintenance_windows: MaintenanceWindows | None = None
    templates: EmailTemplates | None = None


class MqttIn(Strict):
    name: Name
    kind: Literal["mqtt"]
    topic: MqttTopic
    maintenance_windows: MaintenanceWindows | None = None


class SnsIn(Strict):
    name: Name
    kind: Literal["sns"]
    topic_arn: SnsArn
    maintenance_windows: MaintenanceWindows | None = None


IntegrationIn = Annotated[WebhookIn | EmailIn | MqttIn | SnsIn, Field(discriminator="kind")]


SEALED = "<sealed>"


class Integration(BaseModel):
    integration_id: str
    name: str
    kind: Literal["webhook", "email", "mqtt", "sns"]
    config: dict[str, Any] = Field(
        description=f"As given, except custom webhook header values: sealed at rest and shown as {SEALED!r}"
    )
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @field_validator("config")
    @classmethod
    def _hide_header_values(cls, config: dict[str, Any]) -> dict[str, Any]:
        if headers := config.get("headers"):
            return {**config, "headers": dict.fromkeys(headers, SEALED)}
        return config


class IntegrationCreated(Integration):
    secret: str | None = Field(
        description="Webhook signing secret (whsec_...): shown once, never again"
    )


# --- routes --------------------------------------------------------------------------------


class RouteMatch(Strict):
    severity_at_least: Severity | None = None
    rule_ids: Annotated[list[Id], Field(max_length=100)] | None = None
    device_tags: Tags | None = None
    maintenance_windows: MaintenanceWindows | None = None


class RouteIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Critical to on-call",
                    "integration_id": "int_0123456789abcdef",
                    "match": {"severity_at_least": "major"},
                    "group_by": ["rule_id"],
                    "group_wait_s": 30,
                    "repeat_interval_s": 3600,
                }
            ]
        },
    )
    name: Name
    integration_id: Id
    match: RouteMatch = Field(default_factory=RouteMatch)
    group_by: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^[a-z_.]{1,64}$")]], Field(max_length=10)
    ] = Field(default_factory=list)
    group_wait_s: Annotated[int, Field(ge=0, le=3600)] = 0
    group_interval_s: Annotated[int, Field(ge=0, le=86400)] | None = None
    repeat_interval_s: Annotated[int, Field(ge=60, le=7 * 86400)] | None = None


class Route(BaseModel):
    route_id: str
    name: str
    integration_id: str
    match: dict[str, Any]
    group_by: list[str]
    group_wait_s: int
    group_interval_s: int | None = None
    repeat_interval_s: int | None
    created_at: datetime
    updated_at: datetime
    version: int


# --- alerts --------------------------------------------------------------------------------

AlertStatus = Literal["open", "acknowledged", "resolved", "closed"]


class Alert(BaseModel):
    alert_id: str
    fingerprint: str
    rule_id: str
    device_id: str
    severity: str
    status: AlertStatus
    opened_at: datetime
    acknowledged_at: datetime | None
    silenced_until: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    details: dict[str, Any]
    version: int


class AlertWithEvents(Alert):
    events: list[EventOut]


class SilenceIn(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"duration_s": 3600}]}
    )
    duration_s: Annotated[int, Field(ge=60, le=30 * 86400, description="How long to silence")]


# --- deliveries, quarantine, telemetry -----------------------------------------------------


class DeliveryAttempt(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None


class Delivery(BaseModel):
    delivery_id: str
    alert_id: str
    alert_event_id: str
    integration_id: str
    status: Literal["scheduled", "succeeded", "abandoned"]
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    scheduled_at: datetime
    completed_at: datetime | None
    version: int
    attempts: list[DeliveryAttempt]


QuarantineReason = Literal[
    "BAD_TOPIC",
    "PAYLOAD_TOO_LARGE",
    "BAD_JSON",
    "SCHEMA_INVALID",
    "UNKNOWN_DEVICE",
    "DEVICE_DECOMMISSIONED",
    "RATE_LIMITED",
    "TIMESTAMP_OUT_OF_RANGE",
]


class QuarantineCount(BaseModel):
    minute: datetime
    reason: str
    stored: int = Field(description="Messages kept as rows in the quarantine")
    suppressed: int = Field(description="Messages only counted (beyond the per-minute row cap)")


class QuarantineCounts(BaseModel):
    time_from: datetime = Field(alias="from", serialization_alias="from")
    time_to: datetime = Field(alias="to", serialization_alias="to")
    items: list[QuarantineCount] = Field(description="Per minute and reason, oldest first")

    model_config = ConfigDict(populate_by_name=True)


class QuarantinedMessage(BaseModel):
    id: int
    received_at: datetime
    device_id: str | None
    topic: str
    reason: str
    detail: str
    payload_base64: str = Field(description="The first 4 KiB of the payload, base64")
    payload_size: int


class Reading(BaseModel):
    time: datetime
    seq: int | None
    metrics: dict[str, Any]


class Bucket(BaseModel):
    bucket: datetime
    min: float | None
    max: float | None
    avg: float | None
    count: int


class Telemetry(BaseModel):
    device_id: str
    metric: str | None
    bucket: str | None
    time_from: datetime = Field(alias="from")
    time_to: datetime = Field(alias="to")
    readings: list[Reading] | None = None
    buckets: list[Bucket] | None = None
    next_cursor: str | None = None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


# --- provisioning --------------------------------------------------------------------------


class ProfileIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Berlin reefers 2026",
                    "device_limit": 500,
                    "expires_at": "2027-01-01T00:00:00Z",
                    "tags": {"site": "berlin"},
                }
            ]
        },
    )
    name: Name
    device_limit: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    expires_at: datetime | None = None
    tags: Tags = Field(default_factory=dict)

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a time zone")
        return None if value is None else in_range(value)


class Profile(BaseModel):
    profile_id: str
    name: str
    provision_key: str
    device_limit: int | None
    devices_claimed: int
    expires_at: datetime | None
    tags: dict[str, str]
    status: Literal["active", "revoked"]
    created_at: datetime
    version: int


class ProfileCreated(Profile):
    provision_secret: str = Field(description="Shown once; FleetPulse keeps only a hash")


class ProvisionIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "provision_key": "pk_4fbc1d2a9e0b7c3d5f6a",
                    "provision_secret": "ps_...",
                    "device_id": "truck-043",
                    "name": "Reefer truck 43",
                }
            ]
        },
    )
    provision_key: Annotated[Text, StringConstraints(min_length=1, max_length=128)]
    provision_secret: Annotated[Text, StringConstraints(min_length=1, max_length=256)]
    device_id: Id
    name: Name | None = None


class Health(BaseModel):
    status: str
    failing: list[str] = Field(default_factory=list)
