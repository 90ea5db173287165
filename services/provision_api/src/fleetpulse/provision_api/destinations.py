"""Where integrations may send: the checks the API makes when one is created or updated.

- webhook: the URL normalised as the delivery worker's HTTP client will parse it, refused when
  it can never be sent or (unless private webhooks are allowed) when its host is, or resolves to,
  a non-public address (the worker checks again on every connect);
- mqtt: a topic in the tenant's namespace ``fleetpulse/{tenant}/...``, valid for PUBLISH as MQTT
  defines it (the delivery user's broker ACL allows only ``fleetpulse/#``);
- sns: never a platform-owned topic (names starting with the platform prefix, e.g. the
  ``{prefix}domain-events`` topic).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fleetpulse.common.mqtt import integration_namespace, publish_topic_problem
from fleetpulse.common.ssrf import (
    BlockedDestinationError,
    UnusableUrlError,
    check_address,
    check_destination,
    webhook_destination,
)
from fleetpulse.provision_api.domain import InvalidError

Resolver = Callable[[str], Awaitable[list[str]]]


async def system_resolve(host: str, timeout_s: float = 2.0) -> list[str]:
    """The host's addresses through the system resolver; [] when it cannot be resolved now."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout_s
        )
    except (OSError, TimeoutError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    allow_private_webhooks: bool = False
    platform_prefix: str = "fleetpulse-"
    resolve: Resolver = field(default=system_resolve)

    async def webhook_url(self, url: str) -> str:
        """The normalised URL to store, or :class:`InvalidError` naming ``body.url``."""
        try:
            destination = webhook_destination(url)
            if not self.allow_private_webhooks:
                check_destination(destination)
                if destination.address is None:
                    for address in await self.resolve(destination.host):
                        check_address(address)
        except (UnusableUrlError, BlockedDestinationError) as exc:
            raise InvalidError("body.url", str(exc)) from None
        return str(destination.url)

    def mqtt_topic(self, tenant_id: str, topic: str) -> str:
        problem = publish_topic_problem(topic)
        if problem is not None:
            raise InvalidError("body.topic", f"not an MQTT topic name: {problem}")
        namespace = integration_namespace(tenant_id)
        if not topic.startswith(namespace) or len(topic) == len(namespace):
            raise InvalidError("body.topic", f"must be under this tenant's {namespace}")
        return topic

    def sns_topic_arn(self, arn: str) -> str:
        name = arn.rsplit(":", 1)[-1]
        if self.platform_prefix and name.lower().startswith(self.platform_prefix.lower()):
            raise InvalidError(
                "body.topic_arn",
                f"topics named {self.platform_prefix}* belong to the platform",
            )
        return arn
