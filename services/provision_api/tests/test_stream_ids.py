"""Issue 13 item 4: stream ids are unambiguous across tenants, existing streams are migrated,
and a registration that fails leaves no enabled client in Mosquitto's dynamic security."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

import fleetpulse.common.db.migrations as migrations_package
from fleetpulse.common.eventstore import NO_STREAM, NewEvent, PostgresEventStore, stream_id
from fleetpulse.common.mqtt import MqttEndpoint
from fleetpulse.provision_api.credentials.mosquitto import DynsecAdmin, MosquittoCredentialIssuer
from fleetpulse.testing.mosquitto import MosquittoBroker

from .conftest import TestIssuer

pytestmark = pytest.mark.security
MIGRATION = Path(migrations_package.__file__).parent / "0203_unambiguous_stream_ids.sql"


@pytest_asyncio.fixture
async def credentials(mosquitto: MosquittoBroker) -> AsyncIterator[MosquittoCredentialIssuer]:
    admin = DynsecAdmin(MqttEndpoint.parse(mosquitto.admin_url))
    await admin.start()
    yield MosquittoCredentialIssuer(admin)
    await admin.close()


def test_no_two_tenant_entity_pairs_share_a_stream() -> None:
    pairs = [
        ("sa", "x-col1"),
        ("sa-x", "col1"),
        ("sa-x-col1", "a"),
        ("s", "a-x-col1"),
        ("s-a", "x-col1"),
        ("sa_x", "col1"),
    ]
    ids = {stream_id("device", t, d) for t, d in pairs}
    assert len(ids) == len(pairs)
    assert stream_id("device", "acme", "d-1") == "device-acme-d-1"  # unchanged for most tenants
    with pytest.raises(ValueError, match=":"):
        stream_id("device", "a:b", "c")


async def create_tenant(api: httpx.AsyncClient, oidc: TestIssuer, tenant: str) -> None:
    admin = oidc.headers(None, ("platform-admin",))
    answer = await api.post(
        "/api/v1/tenants", json={"tenant_id": tenant, "name": tenant}, headers=admin
    )
    assert answer.status_code == 201, answer.text


def client_state(mosquitto: MosquittoBroker, username: str) -> dict[str, object] | None:
    [answer] = mosquitto.control([{"command": "getClient", "username": username}])
    return answer.get("data", {}).get("client")  # type: ignore[no-any-return]


async def test_colliding_ids_of_two_tenants_both_register(
    api: httpx.AsyncClient, oidc: TestIssuer, event_store: PostgresEventStore
) -> None:
    suffix = uuid.uuid4().hex[:6]
    first, second = f"sa{suffix}", f"sa{suffix}-x"
    await create_tenant(api, oidc, first)
    await create_tenant(api, oidc, second)
    one = await api.post(
        "/api/v1/devices", headers=oidc.headers(first), json={"device_id": "x-col1"}
    )
    assert one.status_code == 201, one.text
    two = await api.post(
        "/api/v1/devices", headers=oidc.headers(second), json={"device_id": "col1"}
    )
    assert two.status_code == 201, two.text  # was 412: both were device-sa-x-col1
    first_events = await event_store.read_stream(stream_id("device", first, "x-col1"))
    second_events = await event_store.read_stream(stream_id("device", second, "col1"))
    assert {e.tenant_id for e in first_events} == {first}
    assert {e.tenant_id for e in second_events} == {second}
    history = await api.get("/api/v1/devices/col1/events", headers=oidc.headers(second))
    assert [e["type"] for e in history.json()["items"]][:1] == ["DeviceRegistered"]


async def test_a_failed_registration_leaves_no_enabled_broker_client(
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    event_store: PostgresEventStore,
    mosquitto: MosquittoBroker,
) -> None:
    tenant = f"t{uuid.uuid4().hex[:6]}"
    await create_tenant(api, oidc, tenant)
    # Something already holds the device's stream (as a colliding tenant's device used to):
    # credentials are issued, then the append fails.
    await event_store.append(
        stream_id("device", tenant, "d1"),
        [NewEvent("Held", {})],
        tenant_id="other",
        expected_version=NO_STREAM,
    )
    failed = await api.post(
        "/api/v1/devices", headers=oidc.headers(tenant), json={"device_id": "d1"}
    )
    assert failed.status_code == 412, failed.text
    state = client_state(mosquitto, f"{tenant}.d1")
    assert state is not None and state.get("disabled") is True  # was an enabled client
    ok = await api.post("/api/v1/devices", headers=oidc.headers(tenant), json={"device_id": "d2"})
    assert ok.status_code == 201  # positive control: a registration that commits is enabled
    enabled = client_state(mosquitto, f"{tenant}.d2")
    assert enabled is not None and not enabled.get("disabled")


async def test_the_migration_moves_existing_streams_of_tenants_with_a_dash(
    db_pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    old = [
        ("device-sa-x-col1", "sa-x"),  # old form of tenant sa-x, device col1
        ("alert-a-b-c-alert-1", "a-b-c"),
        ("device-sa-x-col2", "sa"),  # tenant sa, device x-col2: already unambiguous, kept
        ("tenant-sa-x", "sa-x"),  # tenant streams have no entity, kept
        ("rule-acme-r-1", "acme"),
    ]
    for stream, tenant in old:
        await event_store.append(
            stream, [NewEvent("X", {})], tenant_id=tenant, expected_version=NO_STREAM
        )
    await db_pool.execute(MIGRATION.read_text())
    rows = await db_pool.fetch("SELECT stream_id FROM events ORDER BY position")
    assert [r["stream_id"] for r in rows][-len(old) :] == [
        stream_id("device", "sa-x", "col1"),
        stream_id("alert", "a-b-c", "alert-1"),
        "device-sa-x-col2",
        "tenant-sa-x",
        "rule-acme-r-1",
    ]
    await db_pool.execute(MIGRATION.read_text())  # idempotent
    again = await db_pool.fetch("SELECT stream_id FROM events ORDER BY position")
    assert again == rows
