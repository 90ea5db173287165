"""What the console needs from the API: connectivity and latest values in device reads, search
and connectivity filters with keyset paging at 10,000 devices, PATCH of name and tags as an
event, the selector preview, CORS for the console's origin, and the tenant's live event stream
(server-sent events, resumable, never another tenant's)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from fleetpulse.common.crypto import SecretBox
from fleetpulse.provision_api.app import create_app
from fleetpulse.provision_api.bootstrap import bootstrap
from fleetpulse.provision_api.credentials import InMemoryCredentialIssuer
from fleetpulse.provision_api.settings import Settings

from .conftest import TestIssuer, make_settings


async def _register(
    api: httpx.AsyncClient, oidc: TestIssuer, device_id: str, tenant: str = "acme", **body: Any
) -> dict[str, Any]:
    response = await api.post(
        "/api/v1/devices", json={"device_id": device_id, **body}, headers=oidc.headers(tenant)
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _seen(database_url: str, device_id: str, ago_s: float, metrics: dict[str, Any]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO device_state (tenant_id, device_id, last_seen, last_reading_at, metrics)"
            " VALUES ('acme', $1, now() - make_interval(secs => $2), now(), $3::jsonb)",
            device_id,
            ago_s,
            json.dumps(metrics),
        )
    finally:
        await conn.close()


async def test_device_reads_carry_connectivity_and_latest_values(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], database_url: str
) -> None:
    for device_id in ("fresh", "quiet", "gone", "never"):
        await _register(api, oidc, device_id)
    await _seen(database_url, "fresh", 10, {"temp_c": 4.5, "door_open": False})
    await _seen(database_url, "quiet", 1800, {"temp_c": 7.0})
    await _seen(database_url, "gone", 7200, {})
    viewer = oidc.headers(roles=("viewer",))
    listed = await api.get("/api/v1/devices", headers=viewer)
    assert listed.status_code == 200, listed.text
    by_id = {d["device_id"]: d for d in listed.json()["items"]}
    assert {k: d["connectivity"] for k, d in by_id.items()} == {
        "fresh": "online",
        "quiet": "stale",
        "gone": "offline",
        "never": "offline",
    }
    assert by_id["fresh"]["last_values"] == {"temp_c": 4.5, "door_open": False}
    assert by_id["never"]["last_seen"] is None and by_id["never"]["last_values"] == {}
    one = (await api.get("/api/v1/devices/quiet", headers=viewer)).json()
    assert one["connectivity"] == "stale" and one["last_values"] == {"temp_c": 7.0}
    for status, expected in (
        ("online", ["fresh"]),
        ("stale", ["quiet"]),
        ("offline", ["gone", "never"]),
    ):
        page = await api.get("/api/v1/devices", params={"connectivity": status}, headers=viewer)
        assert [d["device_id"] for d in page.json()["items"]] == expected


async def test_search_matches_id_or_name_and_escapes_wildcards(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    await _register(api, oidc, "truck-1", name="Reefer North")
    await _register(api, oidc, "truck-2", name="100% cold")
    await _register(api, oidc, "pump_7")
    await _register(api, oidc, "truck-9", tenant="globex")

    async def found(search: str) -> list[str]:
        response = await api.get(
            "/api/v1/devices", params={"search": search}, headers=oidc.headers()
        )
        assert response.status_code == 200, response.text
        return [d["device_id"] for d in response.json()["items"]]

    assert await found("TRUCK") == ["truck-1", "truck-2"]  # never globex's truck-9
    assert await found("north") == ["truck-1"]
    assert await found("%") == ["truck-2"]  # a literal percent sign, not "anything"
    assert await found("p_7") == ["pump_7"]
    assert await found("p_") == ["pump_7"]
    assert await found("k_") == []  # '_' is literal: "truck-" does not match
    for bad in ("a\x00b", "\n"):
        refused = await api.get("/api/v1/devices", params={"search": bad}, headers=oidc.headers())
        assert refused.status_code == 422, refused.text  # was a 500 (NUL reached PostgreSQL)


async def test_patch_renames_and_retags_as_an_event(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    created = await _register(api, oidc, "truck-1", name="Old", tags={"site": "berlin"})
    patched = await api.patch(
        "/api/v1/devices/truck-1",
        json={"name": "New", "tags": {"site": "hamburg", "kind": "reefer"}},
        headers={**oidc.headers(), "If-Match": f'"{created["version"]}"'},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["tags"]) == ("New", {"site": "hamburg", "kind": "reefer"})
    assert patched.headers["etag"] == f'"{created["version"] + 1}"'
    events = (await api.get("/api/v1/devices/truck-1/events", headers=oidc.headers())).json()
    last = events["items"][-1]
    assert last["type"] == "DeviceUpdated"
    assert last["data"] == {"device_id": "truck-1", "name": "New", "tags": body["tags"]}
    by_tag = await api.get(
        "/api/v1/devices", params={"tag": "site:hamburg"}, headers=oidc.headers()
    )
    assert [d["device_id"] for d in by_tag.json()["items"]] == ["truck-1"]
    # only name: the tags stay; nothing new: no event
    renamed = await api.patch(
        "/api/v1/devices/truck-1", json={"name": "Newer"}, headers=oidc.headers()
    )
    assert renamed.json()["tags"] == body["tags"]
    same = await api.patch(
        "/api/v1/devices/truck-1", json={"name": "Newer"}, headers=oidc.headers()
    )
    assert same.json()["version"] == renamed.json()["version"]


async def test_patch_is_guarded_like_every_write(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    await _register(api, oidc, "truck-1")
    url = "/api/v1/devices/truck-1"
    stale = await api.patch(url, json={"name": "x"}, headers={**oidc.headers(), "If-Match": '"1"'})
    assert stale.status_code == 412
    viewer = await api.patch(url, json={"name": "x"}, headers=oidc.headers(roles=("viewer",)))
    assert viewer.status_code == 403
    other = await api.patch(url, json={"name": "x"}, headers=oidc.headers("globex"))
    assert other.status_code == 404
    bad = await api.patch(url, json={"tags": {"bad key!": "v"}}, headers=oidc.headers())
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    unknown = await api.patch(url, json={"status": "active"}, headers=oidc.headers())
    assert unknown.status_code == 422
    ok = await api.patch(url, json={"name": "x"}, headers=oidc.headers())
    assert ok.status_code == 200 and ok.json()["name"] == "x"  # positive control
    await api.delete(url, headers=oidc.headers())
    gone = await api.patch(url, json={"name": "y"}, headers=oidc.headers())
    assert gone.status_code == 409


async def test_selector_preview_counts_active_matching_devices(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    await _register(api, oidc, "a", tags={"site": "berlin", "kind": "reefer"})
    await _register(api, oidc, "b", tags={"site": "berlin"})
    await _register(api, oidc, "c", tags={"site": "berlin"})
    await _register(api, oidc, "x", tenant="globex", tags={"site": "berlin"})
    await api.delete("/api/v1/devices/c", headers=oidc.headers())

    async def matched(tags: dict[str, str]) -> int:
        response = await api.post(
            "/api/v1/rules/selector-preview",
            json={"device_selector": {"tags": tags}},
            headers=oidc.headers(roles=("viewer",)),
        )
        assert response.status_code == 200, response.text
        return int(response.json()["matched_devices"])

    assert await matched({"site": "berlin"}) == 2
    assert await matched({"site": "berlin", "kind": "reefer"}) == 1
    assert await matched({}) == 2


async def test_paging_10000_devices_stays_fast(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            INSERT INTO devices (tenant_id, device_id, tags, registered_at, updated_at, version)
            SELECT t, 'dev-' || lpad(i::text, 5, '0'), jsonb_build_object('rack', (i % 10)::text),
                   now(), now(), 1
            FROM generate_series(1, 10000) AS i, (VALUES ('acme'), ('globex')) AS v(t)
            """
        )
        await conn.execute(
            """
            INSERT INTO device_state (tenant_id, device_id, last_seen, metrics)
            SELECT 'acme', 'dev-' || lpad(i::text, 5, '0'),
                   now() - make_interval(secs => CASE WHEN i % 3 = 0 THEN 10 ELSE 99999 END),
                   '{"temp_c": 1}'
            FROM generate_series(1, 10000) AS i
            """
        )
        await conn.execute("ANALYZE devices; ANALYZE device_state")
    finally:
        await conn.close()
    seen: list[str] = []
    slowest = 0.0
    params: dict[str, Any] = {"limit": 500}
    while True:
        started = time.perf_counter()
        response = await api.get("/api/v1/devices", params=params, headers=oidc.headers())
        slowest = max(slowest, time.perf_counter() - started)
        body = response.json()
        seen += [d["device_id"] for d in body["items"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert len(seen) == len(set(seen)) == 10000 and seen == sorted(seen)
    online = await api.get(
        "/api/v1/devices",
        params={"connectivity": "online", "tag": "rack:3", "limit": 100},
        headers=oidc.headers(),
    )
    ids = [d["device_id"] for d in online.json()["items"]]
    assert ids and all(int(i[4:]) % 3 == 0 and int(i[4:]) % 10 == 3 for i in ids)
    assert slowest < 1.0, f"a page of 500 took {slowest:.3f}s"


async def test_cors_allows_only_the_configured_console_origin(
    database_url: str, oidc: TestIssuer
) -> None:
    settings = make_settings(database_url, oidc, cors_origins="https://console.example.com/")
    assert settings.cors_origin_list == ["https://console.example.com"]
    async with bootstrap(settings, issuer=InMemoryCredentialIssuer()) as booted:
        app = create_app(booted.services, cors_origins=settings.cors_origin_list)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            preflight = {
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization,if-match",
            }
            allowed = await client.options(
                "/api/v1/devices/d1",
                headers={"Origin": "https://console.example.com", **preflight},
            )
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://console.example.com"
            assert "PATCH" in allowed.headers["access-control-allow-methods"]
            other = await client.options(
                "/api/v1/devices/d1", headers={"Origin": "https://evil.example", **preflight}
            )
            assert "access-control-allow-origin" not in other.headers
            read = await client.get(
                "/api/v1/devices", headers={"Origin": "https://console.example.com"}
            )
            assert read.status_code == 401  # CORS is no authentication
            assert "etag" in read.headers.get("access-control-expose-headers", "").lower()


def test_connectivity_windows_must_be_ordered(database_url: str, oidc: TestIssuer) -> None:
    with pytest.raises(ValueError, match="DEVICE_ONLINE_S"):
        make_settings(database_url, oidc, device_online_s=600, device_stale_s=600)
    ok = make_settings(database_url, oidc, device_online_s=60, device_stale_s=600)
    assert (ok.device_online_s, ok.device_stale_s) == (60, 600)


def test_cors_origins_setting_rejects_non_origins(database_url: str, oidc: TestIssuer) -> None:
    with pytest.raises(ValueError, match="origin"):
        make_settings(database_url, oidc, cors_origins="https://ok.example, console.example.com")
    with pytest.raises(ValueError, match="origin"):
        make_settings(database_url, oidc, cors_origins="https://a.example/path")
    Settings.model_validate(
        {
            "database_url": database_url,
            "oidc_issuer": oidc.url,
            "webhook_encryption_key": SecretBox.generate_key(),
            "cors_origins": "http://127.0.0.1:5173,https://console.example.com",
        }
    )


# --- the live event stream ------------------------------------------------------------------


@dataclass
class Received:
    frames: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    status: int = 0
    content_type: str = ""


@asynccontextmanager
async def listening(
    base_url: str, headers: dict[str, str], **params: Any
) -> AsyncIterator[Received]:
    """Read the stream in the background into a :class:`Received` until the block exits."""
    received = Received()
    ready = asyncio.Event()

    async def read() -> None:
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
            client.stream(
                "GET", "/api/v1/events/stream", headers=headers, params=params
            ) as response,
        ):
            received.status = response.status_code
            received.content_type = response.headers.get("content-type", "")
            ready.set()
            event_id = None
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    received.frames.append(json.loads(line[6:]))
                    received.ids.append(event_id or "")

    task = asyncio.create_task(read())
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield received
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
def settings(database_url: str, oidc: TestIssuer) -> Settings:
    return make_settings(database_url, oidc, stream_poll_s=0.1)


async def test_stream_sends_the_tenants_events_live_and_never_another_tenants(
    live_api: str, oidc: TestIssuer
) -> None:
    async with httpx.AsyncClient(base_url=live_api) as api:
        for tenant in ("acme", "globex"):
            created = await api.post(
                "/api/v1/tenants",
                json={"tenant_id": tenant, "name": tenant},
                headers=oidc.headers(None, ("platform-admin",)),
            )
            assert created.status_code == 201
        async with (
            listening(live_api, oidc.headers("acme", ("viewer",))) as acme,
            listening(live_api, oidc.headers("globex", ("viewer",))) as globex,
        ):
            assert (acme.status, acme.content_type.split(";")[0]) == (200, "text/event-stream")
            await _register(api, oidc, "acme-secret-truck", tenant="acme")
            await _until(lambda: len(acme.frames) >= 2)
            assert [f["type"] for f in acme.frames] == [
                "DeviceRegistered",
                "DeviceCredentialsIssued",
            ]
            assert acme.frames[0]["stream_id"] == "device-acme-acme-secret-truck"
            assert acme.ids == [str(f["position"]) for f in acme.frames]
            # positive control: globex's own stream works and shows its own event
            await _register(api, oidc, "globex-truck", tenant="globex")
            await _until(lambda: len(globex.frames) >= 2)
            await asyncio.sleep(0.3)  # a few more polls: anything of acme's would arrive now
            assert all("globex-truck" in f["stream_id"] for f in globex.frames)
            assert not any("acme" in json.dumps(f) for f in globex.frames)
            assert not any("globex" in json.dumps(f) for f in acme.frames)


async def test_stream_resumes_after_last_event_id(live_api: str, oidc: TestIssuer) -> None:
    async with httpx.AsyncClient(base_url=live_api) as api:
        await api.post(
            "/api/v1/tenants",
            json={"tenant_id": "acme", "name": "Acme"},
            headers=oidc.headers(None, ("platform-admin",)),
        )
        async with listening(live_api, oidc.headers()) as first:
            await _register(api, oidc, "d1")
            await _until(lambda: len(first.frames) >= 2)
        last_seen = first.ids[-1]
        await _register(api, oidc, "d2")  # while nobody listens
        async with listening(live_api, {**oidc.headers(), "Last-Event-ID": last_seen}) as again:
            await _until(lambda: len(again.frames) >= 2)
            await asyncio.sleep(0.3)
        assert [f["stream_id"] for f in again.frames] == ["device-acme-d2"] * 2
        assert int(again.ids[0]) > int(last_seen)
        async with listening(live_api, oidc.headers(), after=0) as replay:
            await _until(lambda: len(replay.frames) >= 4)
        assert [f["stream_id"] for f in replay.frames][-4:] == ["device-acme-d1"] * 2 + [
            "device-acme-d2"
        ] * 2


async def test_stream_is_authenticated_and_checks_last_event_id(
    live_api: str, oidc: TestIssuer
) -> None:
    async with httpx.AsyncClient(base_url=live_api, timeout=10) as api:
        anonymous = await api.get("/api/v1/events/stream")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        no_tenant = await api.get(
            "/api/v1/events/stream", headers=oidc.headers(None, ("platform-admin",))
        )
        assert no_tenant.status_code in (401, 403)
        bad = await api.get(
            "/api/v1/events/stream", headers={**oidc.headers(), "Last-Event-ID": "x1"}
        )
        assert bad.status_code == 422


async def test_quarantine_filters_by_reason_and_counts_per_minute(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            INSERT INTO quarantine (tenant_id, device_id, topic, reason, detail, payload) VALUES
              ('acme', 'd1', 't', 'BAD_JSON', 'x', '\\x7b'),
              ('acme', 'd1', 't', 'SCHEMA_INVALID', 'y', '\\x7b'),
              ('globex', 'd1', 't', 'BAD_JSON', 'z', '\\x7b');
            INSERT INTO quarantine_counts (minute, tenant_id, reason, stored, suppressed) VALUES
              (date_trunc('minute', now()) - interval '2 minutes', 'acme', 'BAD_JSON', 5, 100),
              (date_trunc('minute', now()) - interval '1 minute', 'acme', 'SCHEMA_INVALID', 1, 0),
              (date_trunc('minute', now()) - interval '2 days', 'acme', 'BAD_JSON', 9, 9),
              (date_trunc('minute', now()) - interval '1 minute', 'globex', 'BAD_JSON', 7, 7);
            """
        )
    finally:
        await conn.close()
    viewer = oidc.headers(roles=("viewer",))
    rows = await api.get("/api/v1/quarantine", params={"reason": "BAD_JSON"}, headers=viewer)
    assert rows.status_code == 200, rows.text
    assert [(r["reason"], r["detail"]) for r in rows.json()["items"]] == [("BAD_JSON", "x")]
    every = await api.get("/api/v1/quarantine", headers=viewer)
    assert len(every.json()["items"]) == 2  # positive control: the filter did the narrowing
    bad = await api.get("/api/v1/quarantine", params={"reason": "NOPE"}, headers=viewer)
    assert bad.status_code == 422
    counts = await api.get("/api/v1/quarantine/counts", headers=viewer)
    assert counts.status_code == 200, counts.text
    body = counts.json()
    assert set(body) == {"from", "to", "items"}
    assert [(c["reason"], c["stored"], c["suppressed"]) for c in body["items"]] == [
        ("BAD_JSON", 5, 100),
        ("SCHEMA_INVALID", 1, 0),
    ]  # the last 24 hours only, and never globex's
    week = await api.get(
        "/api/v1/quarantine/counts",
        params={"from": "2000-01-01T00:00:00Z", "to": "2000-03-01T00:00:00Z"},
        headers=viewer,
    )
    assert week.status_code == 422


async def test_stream_ends_when_the_api_stops_and_after_its_maximum_age() -> None:
    from fleetpulse.provision_api.api.stream import frames

    class NoEvents:
        async def events_after(self, tenant_id: str, position: int, limit: int) -> list[Any]:
            return []

    stopping = asyncio.Event()
    stream = frames(NoEvents(), "acme", 7, stopping, poll_s=0.05)  # type: ignore[arg-type]
    assert (await anext(stream)).startswith("retry: ")
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # positive control: an idle stream stays open
    stopping.set()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1.0)
    aged = frames(NoEvents(), "acme", 7, asyncio.Event(), poll_s=0.05, max_s=0.2)
    started = time.monotonic()
    chunks = [chunk async for chunk in aged]  # ends by itself
    assert len(chunks) == 1 and chunks[0].startswith("retry: ")
    assert time.monotonic() - started < 1.0
