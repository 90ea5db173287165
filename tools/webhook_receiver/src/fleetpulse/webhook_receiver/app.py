"""``fleetpulse-webhook-receiver``: verify and print FleetPulse webhooks.

    fleetpulse-webhook-receiver --secret whsec_... [--host 127.0.0.1] [--port 9000] [--quiet]

Each POST is verified on its raw body bytes with :func:`fleetpulse.common.webhooks.verify`
(signature and timestamp tolerance) before anything is parsed: 204 and one JSON line on stdout
when it is authentic, 401 otherwise. A ``webhook-id`` seen before is acknowledged again but
flagged ``"duplicate": true`` (senders retry with the same id; handle each id once).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import OrderedDict

from aiohttp import web

from fleetpulse.common.webhooks import DEFAULT_TOLERANCE_S, WebhookVerificationError, verify

SEEN_IDS = 100_000


class Receiver:
    def __init__(
        self, secret: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S, quiet: bool = False
    ) -> None:
        self._secret = secret
        self._tolerance_s = tolerance_s
        self._quiet = quiet
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.accepted = 0
        self.rejected = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self._secret, request.headers, body, tolerance_s=self._tolerance_s)
        except WebhookVerificationError as exc:
            self.rejected += 1
            return web.json_response({"error": str(exc)}, status=401)
        self.accepted += 1
        self._print(request.headers["webhook-id"], body)
        return web.Response(status=204)

    def _print(self, msg_id: str, body: bytes) -> None:
        duplicate = msg_id in self._seen
        self._seen[msg_id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        if not self._quiet:
            print(
                json.dumps(
                    {"webhook_id": msg_id, "duplicate": duplicate, "payload": json.loads(body)}
                ),
                flush=True,
            )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/{tail:.*}", self.handle)
        return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Verify and print FleetPulse webhooks")
    parser.add_argument(
        "--secret",
        default=os.environ.get("WEBHOOK_SECRET"),
        help="the integration's whsec_ secret (or WEBHOOK_SECRET)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE_S)
    parser.add_argument("--quiet", action="store_true", help="do not print accepted webhooks")
    args = parser.parse_args(argv)
    if not args.secret:
        sys.exit("fleetpulse-webhook-receiver: --secret (or WEBHOOK_SECRET) is required")
    receiver = Receiver(args.secret, tolerance_s=args.tolerance, quiet=args.quiet)
    web.run_app(receiver.app(), host=args.host, port=args.port, print=None)
