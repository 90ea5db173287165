"""Email against a real aiosmtpd (STARTTLS + AUTH), MQTT against Mosquitto, SNS against moto."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.delivery_worker.channels.base import Notification
from fleetpulse.delivery_worker.channels.email import EmailChannel, SmtpConfig
from fleetpulse.delivery_worker.channels.mqtt import MqttChannel
from fleetpulse.delivery_worker.channels.sns import SnsChannel
from fleetpulse.testing.ports import free_port

PAYLOAD = {
    "type": "alert.opened",
    "timestamp": "2030-01-01T00:00:00+00:00",
    "data": {
        "alert_id": "a1",
        "severity": "critical",
        "rule_name": "too hot",
        "device_id": "d1",
        "status": "firing",
    },
}


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = auth_data.login == b"alerts" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


def notification(**config: Any) -> Notification:
    return Notification("dlv_1", "t1", "i1", config, PAYLOAD)


async def test_email_over_starttls_with_auth(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        good = EmailChannel(SmtpConfig("127.0.0.1", port, "alerts", "s3cret", True, str(cert)))
        result = await good.send(notification(to=["ops@example.com", "oncall@example.com"]))
        assert result.ok, result.error
        bad = EmailChannel(SmtpConfig("127.0.0.1", port, "alerts", "wrong", True, str(cert)))
        refused = await bad.send(notification(to=["ops@example.com"]))
        untrusted = EmailChannel(SmtpConfig("127.0.0.1", port, "alerts", "s3cret", True, None))
        unverified = await untrusted.send(notification(to=["ops@example.com"]))
    finally:
        controller.stop()
    assert len(inbox.envelopes) == 1
    envelope = inbox.envelopes[0]
    assert envelope.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    text = (
        envelope.content.decode() if isinstance(envelope.content, bytes) else str(envelope.content)
    )
    assert "Subject: [FleetPulse] FIRING critical too hot on d1" in text
    assert '"alert_id": "a1"' in text
    assert (refused.ok, refused.status_code) == (False, 535)
    assert not unverified.ok
    assert "CERTIFICATE_VERIFY_FAILED" in (unverified.error or "") or "certificate" in (
        unverified.error or ""
    )


async def test_email_without_recipients_is_permanent() -> None:
    result = await EmailChannel(SmtpConfig("127.0.0.1")).send(notification(to=[]))
    assert result.permanent


async def test_mqtt_publishes_to_the_topic_with_qos(mosquitto: Any) -> None:
    from fleetpulse.common.mqtt import MqttEndpoint, aiomqtt_client
    from fleetpulse.testing.mosquitto import Acl, unique_username

    user = unique_username("notify")
    url = mosquitto.url_for(user, "pw")
    mosquitto.add_client(user, "pw", [Acl("publishClientSend", "fleetpulse/#")])
    channel = MqttChannel(url)
    listener = unique_username("listen")
    mosquitto.add_client(
        listener,
        "pw",
        [Acl("subscribePattern", "fleetpulse/#"), Acl("publishClientReceive", "fleetpulse/#")],
    )
    async with aiomqtt_client(MqttEndpoint.parse(mosquitto.url_for(listener, "pw"))) as client:
        await client.subscribe("fleetpulse/t1/alerts", qos=1)
        try:
            result = await channel.send(notification(topic="fleetpulse/t1/alerts", qos=1))
            assert result.ok, result.error
            message = await asyncio.wait_for(anext(aiter(client.messages)), 10)
        finally:
            await channel.close()
    assert message.qos == 1
    assert json.loads(message.payload)["data"]["alert_id"] == "a1"


async def test_mqtt_without_broker_is_permanent() -> None:
    assert (await MqttChannel(None).send(notification(topic="fleetpulse/t1/x"))).permanent


async def test_sns_publishes_to_the_topic_arn(aws_config: AwsConfig, queue_prefix: str) -> None:
    async with aws_client("sns", aws_config) as sns, aws_client("sqs", aws_config) as sqs:
        topic = (await sns.create_topic(Name=f"{queue_prefix}alerts"))["TopicArn"]
        queue_url = (await sqs.create_queue(QueueName=f"{queue_prefix}alerts"))["QueueUrl"]
        queue_arn = (
            await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        )["Attributes"]["QueueArn"]
        await sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        channel = SnsChannel(sns)
        result = await channel.send(notification(topic_arn=topic))
        missing = await channel.send(notification(topic_arn=topic + "-missing"))
        received = await sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)
    assert result.ok, result.error
    assert json.loads(received["Messages"][0]["Body"])["data"]["alert_id"] == "a1"
    assert not missing.ok


@pytest.mark.parametrize("config", [{}, {"topic_arn": "not-an-arn"}])
async def test_sns_without_topic_is_permanent(config: dict[str, str]) -> None:
    assert (await SnsChannel(None).send(notification(**config))).permanent
