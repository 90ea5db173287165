"""Issue 16 target 4: driver errors are translated once into FleetPulse's own types.

Each SQLSTATE class and each botocore error family maps to one of ours; the driver's exception
stays the ``__cause__``; anything that is not a driver failure passes through untouched."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg.exceptions._base import DataError as ClientDataError
from asyncpg.exceptions._base import PostgresMessageMeta
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from fleetpulse.common.db import is_data_error, is_permanent, is_transient, translate, translated
from fleetpulse.common.errors import (
    DataRejectedError,
    PermanentError,
    TransactionConflictError,
    TransientError,
)
from fleetpulse.common.messaging.errors import (
    aws_errors,
    error_code,
    is_transient_aws,
    queue_missing,
    translate_aws,
)


def _postgres(sqlstate: str) -> asyncpg.PostgresError:
    cls = PostgresMessageMeta.get_message_class_for_sqlstate(sqlstate)
    exc = cls(f"boom {sqlstate}")
    assert exc.sqlstate == sqlstate
    return exc


@pytest.mark.parametrize(
    ("sqlstate", "ours"),
    [
        ("08006", TransientError),  # connection failure
        ("08003", TransientError),  # connection does not exist
        ("53300", TransientError),  # too many connections
        ("53200", TransientError),  # out of memory
        ("57P01", TransientError),  # admin shutdown
        ("57014", TransientError),  # query cancelled
        ("40001", TransactionConflictError),  # serialization failure
        ("40P01", TransactionConflictError),  # deadlock
        ("55P03", TransientError),  # lock not available
        ("25006", TransientError),  # read-only transaction (fail-over)
        ("58030", TransientError),  # I/O error
        ("0A000", TransientError),  # cached statement invalidated (feature_not_supported family)
        ("22012", DataRejectedError),  # division by zero
        ("22P02", DataRejectedError),  # invalid text representation
        ("23505", DataRejectedError),  # unique violation
        ("23514", DataRejectedError),  # check violation
        ("42P01", PermanentError),  # undefined table
        ("42501", PermanentError),  # insufficient privilege
        ("XX000", PermanentError),  # internal error
    ],
)
def test_each_sqlstate_class_maps_to_one_of_ours(sqlstate: str, ours: type[Exception]) -> None:
    driver = _postgres(sqlstate)
    if sqlstate == "0A000":  # only the cached-statement subclass is transient
        driver = asyncpg.InvalidCachedStatementError("cached plan must not change result type")
    translated_exc = translate(driver)
    assert type(translated_exc) is ours
    assert translated_exc.sqlstate == driver.sqlstate  # type: ignore[attr-defined]
    # the classification agrees with the translation, before and after
    assert is_transient(driver) == is_transient(translated_exc) == issubclass(ours, TransientError)
    assert is_permanent(driver) == is_permanent(translated_exc) == issubclass(ours, PermanentError)
    assert is_data_error(driver) == is_data_error(translated_exc)


def test_a_feature_not_supported_is_permanent_unlike_a_stale_cached_statement() -> None:
    assert type(translate(asyncpg.FeatureNotSupportedError("no"))) is PermanentError


@pytest.mark.parametrize(
    ("driver", "ours"),
    [
        (asyncpg.InterfaceError("connection is closed"), TransientError),
        (asyncpg.InternalClientError("another operation is in progress"), TransientError),
        (ClientDataError("invalid input for query argument $1"), DataRejectedError),
        (OSError("connection refused"), TransientError),
        (TimeoutError(), TransientError),
    ],
)
def test_client_side_failures(driver: Exception, ours: type[Exception]) -> None:
    assert type(translate(driver)) is ours


def test_the_context_manager_chains_the_cause_and_passes_others_through() -> None:
    driver = _postgres("40001")
    with pytest.raises(TransactionConflictError) as caught, translated:
        raise driver
    assert caught.value.__cause__ is driver
    with pytest.raises(KeyError), translated:  # not a database failure: untouched
        raise KeyError("x")
    with translated:  # positive control: nothing raised, nothing happens
        pass


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "SendMessage",
    )


@pytest.mark.parametrize(
    ("exc", "ours"),
    [
        (_client_error("Throttling"), TransientError),
        (_client_error("ThrottlingException"), TransientError),
        (_client_error("RequestLimitExceeded"), TransientError),
        (_client_error("ServiceUnavailable", 503), TransientError),
        (_client_error("InternalError", 500), TransientError),
        (_client_error("SomethingNew", 502), TransientError),  # any 5xx
        (_client_error("AccessDenied", 403), PermanentError),
        (_client_error("InvalidParameterValue"), PermanentError),
        (_client_error("AWS.SimpleQueueService.NonExistentQueue"), PermanentError),
        (EndpointConnectionError(endpoint_url="http://x"), TransientError),
        (ConnectTimeoutError(endpoint_url="http://x"), TransientError),
        (ReadTimeoutError(endpoint_url="http://x"), TransientError),
        (ConnectionClosedError(endpoint_url="http://x"), TransientError),
        (NoCredentialsError(), PermanentError),
        (ParamValidationError(report="bad"), PermanentError),
        (OSError("reset"), TransientError),
    ],
)
def test_each_aws_error_family_maps_to_one_of_ours(exc: Exception, ours: type[Exception]) -> None:
    translated_exc = translate_aws(exc)
    assert type(translated_exc) is ours
    assert is_transient_aws(exc) == is_transient_aws(translated_exc)
    assert error_code(translated_exc) == (error_code(exc) or type(exc).__name__)


def test_aws_context_manager_keeps_the_queue_missing_signal() -> None:
    missing = _client_error("AWS.SimpleQueueService.NonExistentQueue")
    with pytest.raises(PermanentError) as caught, aws_errors:
        raise missing
    assert caught.value.__cause__ is missing
    assert queue_missing(caught.value)
    with pytest.raises(ValueError, match="mine"), aws_errors:
        raise ValueError("mine")
