"""compose/: the file validates, every built image has its Dockerfile, long-running services
have health checks and ordered start-up, and every FLEETPULSE_* variable a service is given
is a field of that service's settings class."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
SERVICES = ["ingest", "evaluator", "dispatcher", "delivery_worker", "provision_api"]
PREFIX = "FLEETPULSE_"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_config_is_valid() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    for profile in ([], ["--profile", "simulator"]):
        result = subprocess.run(
            [*command, "-f", str(COMPOSE_FILE), *profile, "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr


def test_every_built_image_has_its_dockerfile(compose: dict[str, Any]) -> None:
    built = {n: s["build"] for n, s in compose["services"].items() if "build" in s}
    assert set(SERVICES) <= set(built)
    for name, build in built.items():
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == REPO, f"{name}: build context must be the repository root"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
    for svc in SERVICES:
        assert built[svc]["dockerfile"] == f"services/{svc}/Dockerfile"


def test_long_running_services_have_healthchecks_and_conditions(compose: dict[str, Any]) -> None:
    services = compose["services"]
    one_shot = {
        dep
        for s in services.values()
        for dep, cond in (s.get("depends_on") or {}).items()
        if cond.get("condition") == "service_completed_successfully"
    }
    assert {"migrate", "mosquitto-init"} <= one_shot
    for name, service in services.items():
        if name in one_shot or service.get("profiles"):
            continue
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test != ["NONE"], f"{name} has no healthcheck"
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for dep, cond in depends.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert cond.get("condition") == expected, f"{name} -> {dep}"
    for svc in SERVICES:
        depends = services[svc]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["timescaledb"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["fleetpulse-migrate"]


def test_services_use_the_aws_emulator_with_auto_create(compose: dict[str, Any]) -> None:
    for svc in SERVICES:
        env = env_of(compose["services"][svc])
        assert env["FLEETPULSE_AUTO_CREATE"] == "true", svc
        assert env["FLEETPULSE_AWS_ENDPOINT_URL"] == "http://aws:5000", svc
        assert env["FLEETPULSE_DATABASE_URL"].startswith("postgresql://"), svc
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            assert env[var], f"{svc}: {var}"
    api = env_of(compose["services"]["provision_api"])
    assert api["FLEETPULSE_OIDC_ISSUER"].endswith("/realms/fleetpulse")
    assert api["FLEETPULSE_OIDC_AUDIENCE"] == "fleetpulse-api"


def test_only_the_api_connects_to_the_broker_as_its_admin(compose: dict[str, Any]) -> None:
    """ingest and the delivery worker use their own least-privilege users, made by the one-shot
    mosquitto-users (tests/infra/test_mosquitto_users.py runs its script on a real broker)."""
    users = {}
    for svc in SERVICES:
        url = env_of(compose["services"][svc]).get("FLEETPULSE_MQTT_URL")
        if url:
            users[svc] = re.match(r"mqtt://(\$\{[^}]*\}|[^:]+):", url).group(1)  # type: ignore[union-attr]
    assert users == {
        "ingest": "fleetpulse-ingest",
        "delivery_worker": "fleetpulse-delivery",
        "provision_api": "${MQTT_ADMIN_USER:-fleetpulse-admin}",
    }
    for svc in ("ingest", "delivery_worker"):
        wait = compose["services"][svc]["depends_on"]["mosquitto-users"]
        assert wait == {"condition": "service_completed_successfully"}, svc
    script = compose["services"]["mosquitto-users"]["volumes"][0].split(":")[0]
    assert (COMPOSE_DIR / script).resolve() == COMPOSE_DIR / "mosquitto" / "service-users.sh"


@pytest.mark.parametrize("svc", SERVICES)
def test_fleetpulse_variables_are_settings_fields(compose: dict[str, Any], svc: str) -> None:
    settings = importlib.import_module(f"fleetpulse.{svc}.settings").Settings
    fields = set(settings.model_fields)
    given = {
        var.removeprefix(PREFIX).lower()
        for var in env_of(compose["services"][svc])
        if var.startswith(PREFIX)
    }
    assert given - fields == set(), f"{svc}: compose sets variables its Settings does not have"


def test_mosquitto_requires_authentication_and_dynamic_security() -> None:
    conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    assert "mosquitto_dynamic_security.so" in conf
    init = (COMPOSE_DIR / "mosquitto" / "init-dynsec.sh").read_text()
    assert "mosquitto_ctrl dynsec init" in init


def test_realm_export() -> None:
    realm = json.loads((COMPOSE_DIR / "keycloak" / "realm-fleetpulse.json").read_text())
    assert realm["realm"] == "fleetpulse"
    roles = {r["name"] for r in realm["roles"]["realm"]}
    assert {"viewer", "operator", "tenant-admin", "platform-admin"} <= roles
    clients = {c["clientId"]: c for c in realm["clients"]}
    api, console = clients["fleetpulse-api"], clients["fleetpulse-console"]
    assert api["publicClient"] is False
    assert console["publicClient"] is True
    assert console["attributes"]["pkce.code.challenge.method"] == "S256"
    for client in (api, console):
        mappers = {m["protocolMapper"]: m["config"] for m in client["protocolMappers"]}
        assert mappers["oidc-audience-mapper"]["included.client.audience"] == "fleetpulse-api"
        assert mappers["oidc-audience-mapper"]["access.token.claim"] == "true"
        tenant = mappers["oidc-usermodel-attribute-mapper"]
        assert tenant["user.attribute"] == tenant["claim.name"] == "tenant_id"
        assert tenant["access.token.claim"] == "true"
    users = {u["username"]: u for u in realm["users"]}
    demo = users["demo-admin"]
    assert demo["attributes"]["tenant_id"] == ["demo"]
    assert "tenant-admin" in demo["realmRoles"]
    # Keycloak >= 24 drops attributes its user profile does not declare.
    profile = realm["components"]["org.keycloak.userprofile.UserProfileProvider"][0]
    declared = json.loads(profile["config"]["kc.user.profile.config"][0])
    assert "tenant_id" in {a["name"] for a in declared["attributes"]}


def migration_tables() -> set[str]:
    migrations = REPO / "libs" / "common" / "src" / "fleetpulse" / "common" / "db" / "migrations"
    text = " ".join(p.read_text() for p in migrations.glob("*.sql"))
    return set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", text, re.I))


def test_grafana_dashboards_query_existing_tables() -> None:
    datasource = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/datasources/timescaledb.yml").read_text()
    )["datasources"][0]
    dashboards = sorted((COMPOSE_DIR / "grafana" / "dashboards").glob("*.json"))
    assert {p.stem for p in dashboards} == {
        "fleet-overview",
        "ingest",
        "open-alerts",
        "delivery-outcomes",
        "device-metrics",
        "operations",
    }
    tables = migration_tables()
    used: set[str] = set()
    for path in dashboards:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == datasource["uid"], path.name
            for target in panel["targets"]:
                sql = re.sub(r"extract\(\s*\w+\s+FROM", "extract(", target["rawSql"], flags=re.I)
                used |= set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", sql, re.I))
    used.discard("interval")
    for contract in ("telemetry", "quarantine", "device_state", "alerts", "deliveries", "events"):
        assert contract in used, f"no dashboard reads {contract}"
    if tables:
        assert used <= tables, f"dashboards read tables no migration creates: {used - tables}"


# what `make up` promises (issue 14, section 3) ---------------------------------------------------

DEV_AND_BROKER_PORTS = {1883, 1884, 5000, 8000, 8081}  # a local Mosquitto and `make dev`


def _interpolate_defaults(text: str) -> str:
    """``${NAME:-default}`` -> default (what compose gives without an override)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)


def bind_mounts(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes") or []:
        source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


def missing_files(compose: dict[str, Any]) -> tuple[list[str], int]:
    """What services mount (bind mounts) or build from (context, Dockerfile, the Dockerfile's
    COPY sources) that is not in the repository, and how many paths were checked."""
    missing: list[str] = []
    checked = 0
    for name, service in compose["services"].items():
        for source in bind_mounts(service):
            path = (COMPOSE_DIR / source).resolve()
            checked += 1
            if not path.exists() or (path.is_dir() and not any(path.iterdir())):
                missing.append(f"{name} mounts {source}")
        if "build" in service:
            build = service["build"]
            context = (COMPOSE_DIR / build["context"]).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            checked += 1
            if not dockerfile.is_file():
                missing.append(f"{name} builds from {dockerfile}")
                continue
            for source in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s", dockerfile.read_text(), re.M):
                checked += 1
                if not source.startswith(("/", "$")) and not (context / source).exists():
                    missing.append(f"{name}: {build['dockerfile']} copies {source}")
    return missing, checked


def test_every_file_a_service_mounts_or_builds_from_exists(compose: dict[str, Any]) -> None:
    missing, checked = missing_files(compose)
    assert missing == []
    assert checked >= 30


def test_the_file_check_names_what_is_missing(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["prometheus"]["volumes"][0] = "./prometheus/gone.yml:/etc/p.yml:ro"
    broken["services"]["ingest"]["build"]["dockerfile"] = "services/nope/Dockerfile"
    missing, _ = missing_files(broken)
    assert missing == [
        "prometheus mounts ./prometheus/gone.yml",
        "ingest builds from " + str(REPO / "services/nope/Dockerfile"),
    ]


def published_ports(compose: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    found: dict[str, list[tuple[str, int]]] = {}
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            host, host_port, _ = _interpolate_defaults(str(port)).rsplit(":", 2)
            found.setdefault(name, []).append((host, int(host_port)))
    return found


def test_host_ports_avoid_make_dev_and_a_local_broker_and_stay_on_loopback(
    compose: dict[str, Any],
) -> None:
    ports = published_ports(compose)
    every = [p for bound in ports.values() for p in bound]
    assert {"provision_api", "mosquitto", "keycloak", "grafana", "mailpit"} <= set(ports)
    for host, port in every:
        assert host == "127.0.0.1", f"{host}:{port} is not loopback"
        assert port not in DEV_AND_BROKER_PORTS, f"host port {port} clashes"
    assert len({p for _, p in every}) == len(every), "two services publish one host port"


def test_up_prints_every_published_port_with_the_same_default(compose: dict[str, Any]) -> None:
    up = (COMPOSE_DIR / "up.sh").read_text()
    text = COMPOSE_FILE.read_text()
    variables = dict(re.findall(r"\"127\.0\.0\.1:\$\{([A-Z_]+_HOST_PORT):-(\d+)\}:", text))
    assert len(variables) >= 10
    for variable, default in variables.items():
        assert f'"${{{variable}:={default}}}"' in up, f"up.sh has no default {variable}={default}"
        assert f"${variable}" in up.split("cat <<URLS", 1)[1], f"up.sh does not print {variable}"
    # the issuer the API trusts is the host name and port Keycloak's tokens carry
    api = env_of(compose["services"]["provision_api"])
    keycloak = env_of(compose["services"]["keycloak"])
    assert api["FLEETPULSE_OIDC_ISSUER"] == keycloak["KC_HOSTNAME"] + "/realms/fleetpulse"
    assert api["FLEETPULSE_MQTT_PUBLIC_PORT"] == "${MQTT_HOST_PORT:-11883}"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" in service:
            continue
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert re.match(r"v?\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"


def test_delivery_worker_sends_email_to_the_smtp_sink(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    env = env_of(services["delivery_worker"])
    assert env["FLEETPULSE_SMTP_HOST"] == "mailpit"
    assert env["FLEETPULSE_SMTP_PORT"] == "1025"  # mailpit's SMTP port
    assert env["FLEETPULSE_SMTP_STARTTLS"] == "false"
    assert services["delivery_worker"]["depends_on"]["mailpit"] == {"condition": "service_healthy"}
    assert "host.docker.internal:host-gateway" in services["delivery_worker"]["extra_hosts"]


def test_collector_exports_traces_to_jaeger_and_metrics_to_prometheus(
    compose: dict[str, Any],
) -> None:
    collector = yaml.safe_load((COMPOSE_DIR / "otel" / "collector.yaml").read_text())
    pipelines = collector["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    exporter_port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    assert f"otel-collector:{exporter_port}" in targets
    sources = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/datasources/timescaledb.yml").read_text()
    )["datasources"]
    prom = next(s for s in sources if s["type"] == "prometheus")
    assert prom["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"] and "jaeger" in compose["services"]


def test_realm_has_machine_clients_for_smoke_and_simulate() -> None:
    realm = json.loads((COMPOSE_DIR / "keycloak" / "realm-fleetpulse.json").read_text())
    clients = {c["clientId"]: c for c in realm["clients"]}
    accounts = {u.get("serviceAccountClientId"): u for u in realm["users"]}
    up = (COMPOSE_DIR / "up.sh").read_text()
    for client_id, roles, tenant in (
        ("fleetpulse-demo-bot", {"tenant-admin", "operator"}, "demo"),
        ("fleetpulse-platform-bot", {"platform-admin"}, None),
    ):
        client = clients[client_id]
        assert client["serviceAccountsEnabled"] is True and client["publicClient"] is False
        assert (
            client["standardFlowEnabled"] is False and client["directAccessGrantsEnabled"] is False
        )
        assert roles <= set(accounts[client_id]["realmRoles"])
        mappers = {m["protocolMapper"]: m["config"] for m in client["protocolMappers"]}
        assert mappers["oidc-audience-mapper"]["included.client.audience"] == "fleetpulse-api"
        if tenant:
            claim = mappers["oidc-hardcoded-claim-mapper"]
            assert (claim["claim.name"], claim["claim.value"]) == ("tenant_id", tenant)
            assert claim["access.token.claim"] == "true"
        else:
            assert "oidc-hardcoded-claim-mapper" not in mappers
        assert f"={client_id}\n" in up and client["secret"] in up
