"""Errors of the messaging adapters, so callers never catch a botocore exception type."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from fleetpulse.common.errors import FleetPulseError

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
    """The AWS error code of a ``ClientError`` ("" for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
