"""AWS IoT Core adapter against moto's server: thing, certificate, policy with thing variables."""

from __future__ import annotations

import json
import uuid

import pytest

from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.provision_api.credentials import DeviceIdentity
from fleetpulse.provision_api.credentials.iot_core import IotCoreCredentialIssuer, thing_name

pytestmark = pytest.mark.slow  # starts the session's moto server


def _issuer(aws_config: AwsConfig, policy: str) -> IotCoreCredentialIssuer:
    return IotCoreCredentialIssuer(lambda: aws_client("iot", aws_config), policy_name=policy)


async def test_issue_rotate_disable(aws_config: AwsConfig) -> None:
    policy = f"fp-{uuid.uuid4().hex[:8]}"
    issuer = _issuer(aws_config, policy)
    device = DeviceIdentity("acme", f"d-{uuid.uuid4().hex[:8]}")
    issued = await issuer.issue(device)
    assert issued.client_id == thing_name(device) == f"acme:{device.device_id}"
    assert issued.certificate_pem and "BEGIN CERTIFICATE" in issued.certificate_pem
    assert issued.private_key and "PRIVATE KEY" in issued.private_key
    async with aws_client("iot", aws_config) as iot:
        thing = await iot.describe_thing(thingName=thing_name(device))
        assert thing["attributes"] == {"tenant_id": "acme", "device_id": device.device_id}
        document = json.loads((await iot.get_policy(policyName=policy))["policyDocument"])
        resources = [s["Resource"] for s in document["Statement"]]
        assert "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}" in resources
        assert (
            "arn:aws:iot:*:*:topic/tenant/${iot:Connection.Thing.Attributes[tenant_id]}"
            "/device/${iot:Connection.Thing.Attributes[device_id]}/*"
        ) in resources
        first = (await iot.list_thing_principals(thingName=thing_name(device)))["principals"]
        assert len(first) == 1
        attached = await iot.list_attached_policies(target=first[0])
        assert [p["policyName"] for p in attached["policies"]] == [policy]

        rotated = await issuer.rotate(device)
        assert rotated.certificate_pem != issued.certificate_pem
        now = (await iot.list_thing_principals(thingName=thing_name(device)))["principals"]
        assert len(now) == 1 and now != first
        old = await iot.describe_certificate(certificateId=first[0].rsplit("/", 1)[-1])
        assert old["certificateDescription"]["status"] == "INACTIVE"

        await issuer.disable(device)
        assert (await iot.list_thing_principals(thingName=thing_name(device)))["principals"] == []
        last = await iot.describe_certificate(certificateId=now[0].rsplit("/", 1)[-1])
        assert last["certificateDescription"]["status"] == "INACTIVE"
    assert await issuer.ready()
