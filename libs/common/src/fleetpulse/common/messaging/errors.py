"""Errors of the messaging adapters, so callers never catch a botocore exception type.

AWS failures are translated once (:func:`translate_aws`, :data:`aws_errors`) into
:class:`~fleetpulse.common.errors.TransientError` (throttling, a 5xx answer, a lost or timed-out
connection) or :class:`~fleetpulse.common.errors.PermanentError` (every other 4xx answer, missing
credentials, an invalid parameter), with the AWS error code as ``code``.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from fleetpulse.common.errors import (
    ErrorTranslation,
    ExternalError,
    FleetPulseError,
    PermanentError,
    TransientError,
)

#: What an AWS call may raise besides our own errors: service answers and transport failures.
AWS_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError, OSError)


class MessagingError(FleetPulseError):
    """Base of the messaging errors."""


class ResourceNotFoundError(MessagingError):
    """A queue or topic that should exist (``AUTO_CREATE=false``: Terraform owns it) does not."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(
            f"{kind} {name!r} does not exist (create it, or set FLEETPULSE_AUTO_CREATE=true)"
        )
        self.kind = kind
        self.name = name


class PublishError(MessagingError):
    """Messages could not be sent; the caller must not acknowledge their source."""


#: Error codes of a call on a queue that does not exist (the real service and moto differ).
NO_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def queue_missing(exc: BaseException) -> bool:
    """Whether an SQS call failed because its queue does not exist."""
    return error_code(exc) in NO_QUEUE_CODES


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` or its translation ("" for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    if isinstance(exc, ExternalError):
        return exc.code
    return ""


#: Error codes of an answer worth trying again: throttling and the service's own trouble.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "KMS.ThrottlingException",
    }
)


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient_aws(exc: BaseException) -> bool:
    """Whether an AWS call that raised ``exc`` may succeed on a later try."""
    if isinstance(exc, ExternalError):
        return isinstance(exc, TransientError)
    if isinstance(exc, ClientError):
        return error_code(exc) in TRANSIENT_CODES or _status(exc) >= 500
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return False
    return isinstance(exc, ConnectionError | HTTPClientError | OSError)


def translate_aws(exc: BaseException) -> BaseException:
    """Our error for an AWS failure (``exc`` itself for anything else, or already ours)."""
    if not isinstance(exc, AWS_ERRORS) or isinstance(exc, ExternalError):
        return exc
    message = f"{type(exc).__name__}: {exc}"
    kind = TransientError if is_transient_aws(exc) else PermanentError
    return kind(message, code=error_code(exc) or type(exc).__name__)


#: The adapter edge of AWS calls: ``with aws_errors: await client.send_message(...)``.
aws_errors = ErrorTranslation(AWS_ERRORS, translate_aws)
