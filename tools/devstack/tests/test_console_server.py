"""The dev stack's console server: what CloudFront does in AWS, on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetpulse.devstack.console import IMMUTABLE, ConsoleServer, runtime_config


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>console</title>")
    (dist / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("outside dist")
    config = runtime_config("http://127.0.0.1:8081/realms/fleetpulse", "http://127.0.0.1:8000")
    server = ConsoleServer("127.0.0.1", 0, dist, config)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_assets_immutable_index_and_config_revalidated(served: str) -> None:
    asset = httpx.get(f"{served}/assets/index-abc123.js")
    assert asset.status_code == 200 and asset.headers["cache-control"] == IMMUTABLE
    assert "javascript" in asset.headers["content-type"]
    index = httpx.get(f"{served}/")
    assert index.headers["cache-control"] == "no-cache" and "<title>console" in index.text
    config = httpx.get(f"{served}/config.json")
    assert config.headers["cache-control"] == "no-cache"
    assert json.loads(config.text) == {
        "issuer": "http://127.0.0.1:8081/realms/fleetpulse",
        "apiUrl": "http://127.0.0.1:8000",
        "clientId": "fleetpulse-console",
    }


def test_spa_routes_get_index_but_missing_assets_404_and_nothing_escapes(served: str) -> None:
    route = httpx.get(f"{served}/alerts/a-1")
    assert route.status_code == 200 and "<title>console" in route.text
    assert httpx.get(f"{served}/assets/gone-xyz.js").status_code == 404
    escaped = httpx.get(f"{served}/../secret.txt")
    assert "outside dist" not in escaped.text
    encoded = httpx.get(f"{served}/%2e%2e/secret.txt")
    assert "outside dist" not in encoded.text


def test_refuses_to_start_without_a_build(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="build the console"):
        ConsoleServer("127.0.0.1", 0, tmp_path, runtime_config("http://i", "http://a"))
