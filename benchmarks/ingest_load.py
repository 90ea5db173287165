"""Publisher processes for benchmarks/ingest.py: a tight MQTT 3.1.1 QoS 1 publisher on a raw socket.

The paho publisher (one Python callback and lock per PUBACK, a thread per client) cost more CPU
per message than ingest itself and capped the offered load near 10k msg/s on this 2-core
machine. This one encodes every PUBLISH before the clock starts, writes them in chunks of
``chunk`` packets with one ``sendall``, keeps at most ``inflight`` unacknowledged (QoS 1: the
broker answers each with a 4-byte PUBACK, counted by bytes) and optionally paces itself to
``rate`` messages/s (below-capacity runs). Returns the seconds from first byte to last PUBACK.
"""

from __future__ import annotations

import socket
import struct
import time

_U16 = struct.Struct(">H")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(value: bytes) -> bytes:
    return _U16.pack(len(value)) + value


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _connect(user: str, password: str, client_id: bytes) -> bytes:
    variable = _string(b"MQTT") + bytes((4, 0xC2)) + _U16.pack(60)  # user, pw, clean
    return _packet(
        0x10, variable + _string(client_id) + _string(user.encode()) + _string(password.encode())
    )


def encode_publishes(messages: list[tuple[str, bytes]]) -> list[bytes]:
    """QoS 1 PUBLISH packets; packet ids cycle through 1..65535 (``inflight`` is far below)."""
    return [
        _packet(0x32, _string(topic.encode()) + _U16.pack(i % 65535 + 1) + payload)
        for i, (topic, payload) in enumerate(messages)
    ]


def publish_share(
    host: str,
    port: int,
    user: str,
    password: str,
    messages: list[tuple[str, bytes]],
    inflight: int = 2000,
    chunk: int = 100,
    rate: float | None = None,
) -> float:
    """Publish ``messages`` with QoS 1 (at ``rate`` msg/s if given), wait for every PUBACK."""
    packets = encode_publishes(messages)
    chunks = [b"".join(packets[i : i + chunk]) for i in range(0, len(packets), chunk)]
    counts = [len(packets[i : i + chunk]) for i in range(0, len(packets), chunk)]
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_connect(user, password, f"bench-pub-{time.monotonic_ns()}".encode()))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[3] != 0:
        raise RuntimeError(f"CONNACK refused: {connack!r}")
    sent = acked_bytes = 0
    started = time.perf_counter()
    for data, n in zip(chunks, counts, strict=True):
        if rate:
            due = started + sent / rate
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
        while sent + n - acked_bytes // 4 > inflight:
            received = sock.recv(65536)
            if not received:
                raise ConnectionError("broker closed the connection")
            acked_bytes += len(received)
        sock.sendall(data)
        sent += n
    while acked_bytes // 4 < sent:
        received = sock.recv(65536)
        if not received:
            raise ConnectionError("broker closed the connection")
        acked_bytes += len(received)
    elapsed = time.perf_counter() - started
    sock.sendall(b"\xe0\x00")
    sock.close()
    return elapsed
