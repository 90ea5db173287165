"""`terraform apply` of infra/terraform against moto's server, then what was created, read back
with boto3 from moto, and `terraform destroy` at the end.

One apply per module run (enable_iot_core on, so the IoT resources are applied too; emulator on,
which leaves out the two resource types moto cannot hold: README "What moto proves"). Each check
is a pure function over what AWS returns, shown to fail on the defect it exists for by a mutated
input beside it.

Adding a service (services/<svc>/ with a pyproject.toml): add it to local.services in main.tf;
the checks below take the service list from services/, so its ECR repository, task definition,
log group, task role, secrets and public exposure are checked with no change here.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from fleetpulse.common.crypto import SecretBox
from fleetpulse.testing.terraform import REGION, REPO, Terraform, moto_module, unique_project

# terraform against moto: the module fixture (apply takes 2-5 min, more on a loaded machine) runs
# inside the first test's timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

# Resource types moto cannot hold (the provider waits forever on them): var.emulator leaves them
# out of apply; test_terraform_plan.py checks they are planned without it.
EMULATOR_PLAN_ONLY = {
    "aws_sqs_queue_redrive_allow_policy",
    "aws_efs_backup_policy",
    "aws_iot_policy",
    "aws_iot_topic_rule",
    "aws_appautoscaling_target",
    "aws_appautoscaling_policy",
    "aws_athena_workgroup",
}
SCHEDULED_TASKS = {"exporter"}
CONTRACT_QUEUES = {"ingest", "evaluator", "dispatcher", "deliveries"}
OPEN = {"0.0.0.0/0", "::/0"}
SECRET_NAME = re.compile(
    r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY|ACCESS_KEY|ENCRYPTION_KEY|DATABASE_URL|MQTT_URL"
)
# JSON keys of our secrets that hold the secret part (usernames, hosts, ids are not secret).
SECRET_KEYS = {"password", "client_secret", "url"}
ISSUER = REPO / "services/provision_api/src/fleetpulse/provision_api/credentials/iot_core.py"
# Paths the third-party images declare as VOLUME (docker inspect): Fargate populates a bind
# mount there with the image's content and ownership. Our images: parsed from the Dockerfiles.
THIRD_PARTY_VOLUMES = {
    "eclipse-mosquitto": {"/mosquitto/data", "/mosquitto/log"},
    "quay.io/keycloak/keycloak": set(),
}


def service_dirs() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))


@dataclass
class Stack:
    tf: Terraform
    endpoint: str
    project: str
    name: str  # <project>-<environment>

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def output(self, name: str) -> Any:
        return json.loads(self.tf.run("output", "-json", name).stdout)

    def task_definition(self, family: str) -> dict[str, Any]:
        return dict(
            self.client("ecs").describe_task_definition(taskDefinition=family)["taskDefinition"]
        )

    def families(self) -> list[str]:
        arns = self.client("ecs").list_task_definitions()["taskDefinitionArns"]
        names = {a.rsplit("/", 1)[-1].rsplit(":", 1)[0] for a in arns}
        return sorted(n for n in names if n.startswith(self.name + "-"))


@pytest.fixture(scope="module")
def stack(terraform_moto: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = unique_project()
    tf = moto_module(tmp_path_factory.mktemp("apply"), terraform_moto)
    acm = boto3.client(
        "acm",
        endpoint_url=terraform_moto,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    # The listeners need a certificate the (emulated) account holds.
    certificate = acm.request_certificate(DomainName="*.fleetpulse.test", ValidationMethod="DNS")
    tf.plan(
        {
            "project": project,
            "certificate_arn": certificate["CertificateArn"],
            "emulator": True,
            "enable_iot_core": True,
            "github_repository": "example/fleetpulse",
            "terraform_state_bucket": "example-state",
        }
    )
    tf.run(
        "apply",
        "-input=false",
        "-no-color",
        "-auto-approve",
        "-parallelism=30",
        "tfplan",
        timeout=1200,
    )
    s = Stack(tf, terraform_moto, project, f"{project}-dev")
    try:
        yield s
    finally:
        tf.run(
            "destroy", "-input=false", "-no-color", "-auto-approve", "-parallelism=30", timeout=1200
        )
        left = [
            r["repositoryName"]
            for r in s.client("ecr").describe_repositories()["repositories"]
            if r["repositoryName"].startswith(project + "/")
        ]
        assert left == [], f"destroy left ECR repositories {left}"
        print(
            f"terraform timings (s): {json.dumps({k: round(v, 1) for k, v in tf.timings.items()})}"
        )


# --- every service: repository, task definition, log group ----------------------------------


def service_problems(
    services: list[str],
    repositories: set[str],
    task_defs: dict[str, dict[str, Any]],
    log_groups: set[str],
) -> list[str]:
    problems = []
    for svc in services:
        repo = next((r for r in repositories if r.endswith("/" + svc.replace("_", "-"))), None)
        td = task_defs.get(svc)
        if repo is None:
            problems.append(f"{svc}: no ECR repository")
        if td is None:
            problems.append(f"{svc}: no task definition")
            continue
        (container,) = [c for c in td["containerDefinitions"] if c["name"] == svc]
        if repo is not None and f"/{repo}:" not in container["image"]:
            problems.append(f"{svc}: image {container['image']} is not from {repo}")
        group = container.get("logConfiguration", {}).get("options", {}).get("awslogs-group")
        if group not in log_groups:
            problems.append(f"{svc}: log group {group} does not exist")
        if not td.get("taskRoleArn") or td.get("taskRoleArn") == td.get("executionRoleArn"):
            problems.append(f"{svc}: no task role of its own")
    return problems


def test_every_service_has_its_repository_task_definition_and_log_group(stack: Stack) -> None:
    services = service_dirs()
    # every service runs as an ECS service, except scheduled tasks (the exporter, exporter.tf),
    # which still get their repository, task definition, log group and role checked below
    assert set(stack.output("ecs_service_names")) == set(services) - SCHEDULED_TASKS
    repositories = {
        r["repositoryName"] for r in stack.client("ecr").describe_repositories()["repositories"]
    }
    task_defs = {
        svc: stack.task_definition(f"{stack.name}-{svc.replace('_', '-')}") for svc in services
    }
    groups = {g["logGroupName"] for g in stack.client("logs").describe_log_groups()["logGroups"]}
    assert service_problems(services, repositories, task_defs, groups) == []
    roles = {td["taskRoleArn"] for td in task_defs.values()}
    assert len(roles) == len(services), "task roles are shared"

    # Positive control: a service without its repository or log group is named.
    gone = sorted(repositories - {f"{stack.project}/ingest"})
    broken = {**task_defs, "evaluator": {**task_defs["evaluator"], "taskRoleArn": None}}
    problems = service_problems(
        services, set(gone), broken, groups - {"/ecs/" + stack.name + "/dispatcher"}
    )
    assert "ingest: no ECR repository" in problems
    assert any(p.startswith("dispatcher: log group") for p in problems)
    assert "evaluator: no task role of its own" in problems


# --- queues ---------------------------------------------------------------------------------


def queue_problems(attributes: dict[str, dict[str, str]]) -> list[str]:
    """attributes: queue name -> its attributes. Every work queue needs an existing DLQ."""
    arns = {a["QueueArn"]: name for name, a in attributes.items()}
    problems = []
    for name, attrs in sorted(attributes.items()):
        if name.endswith("-dlq"):
            continue
        policy = json.loads(attrs.get("RedrivePolicy") or "{}")
        target = arns.get(policy.get("deadLetterTargetArn", ""))
        if target != f"{name}-dlq":
            problems.append(f"{name}: redrive target {target} is not {name}-dlq")
        if not 1 <= int(policy.get("maxReceiveCount", 0)) <= 20:
            problems.append(f"{name}: maxReceiveCount {policy.get('maxReceiveCount')}")
    return problems


def test_each_queue_has_its_dlq_and_redrive_policy(stack: Stack) -> None:
    sqs = stack.client("sqs")
    prefix = stack.output("queue_prefix")
    urls = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    attributes = {
        u.rsplit("/", 1)[-1]: sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])[
            "Attributes"
        ]
        for u in urls
    }
    assert {n.removeprefix(prefix) for n in attributes if not n.endswith("-dlq")} == CONTRACT_QUEUES
    assert queue_problems(attributes) == []
    assert all(a.get("KmsMasterKeyId") for a in attributes.values())
    # Positive control: drop one queue's redrive policy.
    first = f"{prefix}ingest"
    mutated = {
        **attributes,
        first: {k: v for k, v in attributes[first].items() if k != "RedrivePolicy"},
    }
    assert queue_problems(mutated) == [
        f"{first}: redrive target None is not {first}-dlq",
        f"{first}: maxReceiveCount None",
    ]


# --- secrets: referenced, never inlined -----------------------------------------------------


def secret_leaves(value: str) -> set[str]:
    """The secret parts of a secret's value: the whole value, or a JSON secret's password,
    client_secret and url (8+ characters)."""
    try:
        doc = json.loads(value)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        leaves = {str(v) for k, v in doc.items() if k in SECRET_KEYS}
    else:
        leaves = {value}
    return {v for v in leaves if len(v) >= 8}


def inline_secret_problems(
    task_defs: list[dict[str, Any]], secret_values: set[str], secret_arns: set[str]
) -> list[str]:
    problems = []
    for td in task_defs:
        for c in td["containerDefinitions"]:
            where = f"{td['family']}/{c['name']}"
            for env in c.get("environment", []):
                if SECRET_NAME.search(env["name"]) and env["name"] != "FLEETPULSE_REALM_JSON":
                    problems.append(f"{where}: {env['name']} is plain environment")
                if any(v in env["value"] for v in secret_values):
                    problems.append(f"{where}: {env['name']} holds a secret's value")
            for ref in c.get("secrets", []):
                arn = re.sub(r":[^:]*::$", "", ref["valueFrom"])
                if arn not in secret_arns:
                    problems.append(f"{where}: {ref['name']} refers to {arn}, which does not exist")
    return problems


def test_secrets_are_referenced_not_inlined(stack: Stack) -> None:
    sm = stack.client("secretsmanager")
    listed = sm.list_secrets(MaxResults=100)["SecretList"]
    arns = {s["ARN"] for s in listed}
    values: set[str] = set()
    for s in listed:
        if s["Name"].startswith(stack.name + "/") or "rds" in s["Name"]:
            try:
                values |= secret_leaves(sm.get_secret_value(SecretId=s["ARN"])["SecretString"])
            except sm.exceptions.ResourceNotFoundException:
                continue  # database-url: created without a value unless var.database_url is given
    task_defs = [stack.task_definition(f) for f in stack.families()]
    refs = [r for td in task_defs for c in td["containerDefinitions"] for r in c.get("secrets", [])]
    assert len(refs) >= 20 and len(values) >= 10  # positive control: there is something to find
    assert inline_secret_problems(task_defs, values, arns) == []

    # Positive controls: a secret's value copied into environment, a dangling reference.
    td = json.loads(json.dumps(task_defs[0]))
    leaked = sorted(values)[0]
    td["containerDefinitions"][0]["environment"].append({"name": "FLEETPULSE_X", "value": leaked})
    td["containerDefinitions"][0]["secrets"].append(
        {"name": "Y", "valueFrom": "arn:aws:secretsmanager:x:1:secret:gone"}
    )
    problems = inline_secret_problems([td], values, arns)
    assert any("FLEETPULSE_X holds a secret's value" in p for p in problems)
    assert any("Y refers to" in p for p in problems)


def test_generated_secrets_are_usable(stack: Stack) -> None:
    sm = stack.client("secretsmanager")

    def value(suffix: str) -> str:
        return str(sm.get_secret_value(SecretId=f"{stack.name}/{suffix}")["SecretString"])

    SecretBox(value("webhook-encryption-key"))  # 32 bytes, base64: the services start
    assert len(base64.b64decode(value("webhook-encryption-key"))) == 32
    for user in ("admin", "ingest", "delivery"):
        doc = json.loads(value(f"mqtt-{user}"))
        assert re.fullmatch(r"[A-Za-z0-9]{40}", doc["password"]), (
            "password unfit for an mqtt:// URL"
        )
        assert (
            doc["url"]
            == f"mqtt://{doc['username']}:{doc['password']}@mosquitto.{stack.name}.internal:1883"
        )
    for client in ("api", "smoke"):
        doc = json.loads(value(f"keycloak-client-{client}"))
        assert doc["client_id"] == f"fleetpulse-{client}" and len(doc["client_secret"]) == 40
        assert (
            doc["token_url"]
            == "https://api.fleetpulse.test/auth/realms/fleetpulse/protocol/openid-connect/token"
        )
    state = stack.tf.run("show", "-json").stdout
    assert json.loads(value("mqtt-admin"))["password"] not in state, "generated value in the state"


# --- only the load balancers are public -----------------------------------------------------


def public_exposure_problems(
    groups: list[dict[str, Any]],
    lb_groups: set[str],
    services: list[dict[str, Any]],
    databases: list[dict[str, Any]],
) -> list[str]:
    problems = []
    for g in groups:
        open_ = [
            p
            for p in g.get("IpPermissions", [])
            for r in p.get("IpRanges", []) + p.get("Ipv6Ranges", [])
            if (r.get("CidrIp") or r.get("CidrIpv6")) in OPEN
        ]
        if open_ and g["GroupId"] not in lb_groups:
            problems.append(f"security group {g['GroupName']} is open to the internet")
    for svc in services:
        net = svc.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
        if net.get("assignPublicIp") != "DISABLED":
            problems.append(f"ECS service {svc['serviceName']} gets a public IP")
    for db in databases:
        if db.get("PubliclyAccessible"):
            problems.append(f"RDS {db['DBInstanceIdentifier']} is publicly accessible")
    return problems


def test_only_the_load_balancers_are_public(stack: Stack) -> None:
    lbs = [
        lb
        for lb in stack.client("elbv2").describe_load_balancers()["LoadBalancers"]
        if lb["LoadBalancerName"].startswith(stack.name)
    ]
    assert {lb["Type"] for lb in lbs} == {"application", "network"}
    lb_groups = {g for lb in lbs for g in lb.get("SecurityGroups", [])}
    vpc = stack.client("ec2").describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.40.0.0/16"]}])[
        "Vpcs"
    ]
    vpc_ids = [v["VpcId"] for v in vpc]
    groups = stack.client("ec2").describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": vpc_ids}]
    )["SecurityGroups"]
    groups = [g for g in groups if g["GroupName"].startswith(stack.name)]
    ecs = stack.client("ecs")
    arns = ecs.list_services(cluster=stack.name)["serviceArns"]
    services = ecs.describe_services(cluster=stack.name, services=arns)["services"]
    dbs = [
        d
        for d in stack.client("rds").describe_db_instances()["DBInstances"]
        if d["DBInstanceIdentifier"].startswith(stack.name)
    ]
    ecs_services = set(service_dirs()) - SCHEDULED_TASKS  # + keycloak, mosquitto
    assert len(services) == len(ecs_services) + 2 and dbs and len(groups) >= 5
    open_groups = {
        g["GroupId"]
        for g in groups
        if any(r.get("CidrIp") in OPEN for p in g["IpPermissions"] for r in p.get("IpRanges", []))
    }
    assert open_groups and open_groups <= lb_groups  # positive control: the LBs are open
    assert public_exposure_problems(groups, lb_groups, services, dbs) == []
    # Positive control: the same groups without the LBs' exemption.
    assert any(
        "open to the internet" in p for p in public_exposure_problems(groups, set(), services, dbs)
    )


# --- Keycloak imports the realm -------------------------------------------------------------


# make up's machine clients (compose/keycloak): fixed secrets in the file, so never deployed
LOCAL_ONLY_CLIENTS = {"fleetpulse-demo-bot", "fleetpulse-platform-bot"}


def realm_import_problems(container: dict[str, Any], compose_realm: dict[str, Any]) -> list[str]:
    env = {e["name"]: e["value"] for e in container.get("environment", [])}
    secrets = {s["name"] for s in container.get("secrets", [])}
    start = " ".join(container.get("entryPoint", []) + container.get("command", []))
    problems = []
    if "--import-realm" not in start:
        problems.append("keycloak starts without --import-realm")
    if "/opt/keycloak/data/import/" not in start:
        problems.append("no realm file is written into /opt/keycloak/data/import/")
    try:
        realm = json.loads(env.get("FLEETPULSE_REALM_JSON", ""))
    except ValueError:
        return [*problems, "no realm JSON in FLEETPULSE_REALM_JSON"]
    if realm.get("realm") != compose_realm["realm"]:
        problems.append(f"realm {realm.get('realm')} is not {compose_realm['realm']}")
    clients = {c["clientId"]: c for c in realm.get("clients", [])}
    for c in compose_realm["clients"]:
        if c["clientId"] in LOCAL_ONLY_CLIENTS:
            if c["clientId"] in clients:
                problems.append(f"client {c['clientId']} (make up only, fixed secret) deployed")
        elif c["clientId"] not in clients:
            problems.append(f"client {c['clientId']} missing")
    for cid, c in clients.items():
        if c.get("publicClient"):
            continue
        m = re.fullmatch(r"\$\{(\w+)\}", str(c.get("secret", "")))
        if not m or m.group(1) not in secrets:
            problems.append(
                f"client {cid}: secret {c.get('secret')!r} is not a placeholder filled from Secrets Manager"
            )
    for user in realm.get("users", []):
        if user.get("credentials"):
            problems.append(f"user {user['username']} has a password in the realm file")
    return problems


def test_keycloak_imports_the_fleetpulse_realm_with_secrets_from_secrets_manager(
    stack: Stack,
) -> None:
    compose_realm = json.loads((REPO / "compose/keycloak/realm-fleetpulse.json").read_text())
    (container,) = stack.task_definition(f"{stack.name}-keycloak")["containerDefinitions"]
    assert realm_import_problems(container, compose_realm) == []
    refs = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert refs["FLEETPULSE_API_CLIENT_SECRET"].endswith(":client_secret::")
    # The old task: `start`, no import.
    old = {
        **container,
        "entryPoint": [],
        "command": ["start"],
        "environment": [
            e for e in container["environment"] if e["name"] != "FLEETPULSE_REALM_JSON"
        ],
    }
    assert realm_import_problems(old, compose_realm)[:2] == [
        "keycloak starts without --import-realm",
        "no realm file is written into /opt/keycloak/data/import/",
    ]


# --- Mosquitto writes only where its user may (Fargate) ------------------------------------


def image_volumes(image: str) -> set[str]:
    repo = image.rsplit(":", 1)[0]
    if repo in THIRD_PARTY_VOLUMES:
        return THIRD_PARTY_VOLUMES[repo]
    svc = repo.rsplit("/", 1)[-1].replace("-", "_")
    dockerfile = REPO / "services" / svc / "Dockerfile"
    found: set[str] = set()
    if dockerfile.exists():
        for m in re.finditer(r"^VOLUME\s+(.+)$", dockerfile.read_text(), re.M):
            arg = m.group(1).strip()
            found |= set(json.loads(arg)) if arg.startswith("[") else set(arg.split())
    return found


def unwritable_mount_problems(
    task_def: dict[str, Any], access_points: dict[str, dict[str, Any]]
) -> list[str]:
    """A non-root container writing into a volume Fargate creates root-owned cannot write.

    Writable for uid U: an EFS volume through an access point whose POSIX user is U (or root),
    or a bind mount at a path the image declares as VOLUME (populated with the image's ownership).
    """
    volumes = {v["name"]: v for v in task_def.get("volumes", [])}
    problems = []
    for c in task_def["containerDefinitions"]:
        uid = str(c.get("user", "0")).split(":")[0]
        if uid in ("0", "root"):
            continue
        for mount in c.get("mountPoints", []):
            if mount.get("readOnly"):
                continue
            volume = volumes[mount["sourceVolume"]]
            efs = volume.get("efsVolumeConfiguration")
            if efs:
                ap = access_points.get(efs.get("authorizationConfig", {}).get("accessPointId", ""))
                owner = str((ap or {}).get("PosixUser", {}).get("Uid", ""))
                if owner not in (uid, "0"):
                    problems.append(
                        f"{c['name']} (uid {uid}) writes {mount['containerPath']} on EFS owned by {owner or 'root'}"
                    )
            elif mount["containerPath"] not in image_volumes(c["image"]):
                problems.append(
                    f"{c['name']} (uid {uid}) writes {mount['containerPath']}, a root-owned Fargate bind mount"
                )
    return problems


def test_no_container_writes_into_a_root_owned_fargate_volume(stack: Stack) -> None:
    aps = {
        a["AccessPointId"]: a for a in stack.client("efs").describe_access_points()["AccessPoints"]
    }
    task_defs = [stack.task_definition(f) for f in stack.families()]
    assert len(task_defs) == len(service_dirs()) + 3  # + mosquitto, keycloak, migrate
    problems = [p for td in task_defs for p in unwritable_mount_problems(td, aps)]
    assert problems == []
    mosquitto = stack.task_definition(f"{stack.name}-mosquitto")
    (broker,) = [c for c in mosquitto["containerDefinitions"] if c["name"] == "mosquitto"]
    (init,) = [c for c in mosquitto["containerDefinitions"] if c["name"] == "dynsec-init"]
    conf = broker["command"][broker["command"].index("-c") + 1]
    assert conf.startswith("/mosquitto/data/") and conf in " ".join(init["command"])
    # The old layout: the init container (uid 1883) writes the config into a bind mount.
    old = json.loads(json.dumps(mosquitto))
    old["volumes"].append({"name": "config", "host": {}})
    for c in old["containerDefinitions"]:
        if c["name"] == "dynsec-init":
            c["mountPoints"].append(
                {"sourceVolume": "config", "containerPath": "/mosquitto/config", "readOnly": False}
            )
    assert unwritable_mount_problems(old, aps) == [
        "dynsec-init (uid 1883) writes /mosquitto/config, a root-owned Fargate bind mount"
    ]


# --- IoT Core: the grants the issuer needs, the endpoint devices are told --------------------


def issuer_actions() -> set[str]:
    """The IoT API calls IotCoreCredentialIssuer makes, as IAM actions."""
    calls = set(re.findall(r"\biot\.(\w+)\(", ISSUER.read_text()))
    return {"iot:" + "".join(part.title() for part in call.split("_")) for call in calls}


def iot_grant_problems(statements: list[dict[str, Any]], needed: set[str]) -> list[str]:
    granted = set()
    for st in statements:
        if st.get("Effect") == "Allow":
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            granted |= {a for a in actions if a.startswith(("iot:", "secretsmanager:"))}
    missing = sorted(needed - granted)
    unused = sorted(a for a in granted - needed if a.startswith("iot:"))
    problems = [f"API role lacks {a}" for a in missing] + [
        f"API role grants unused {a}" for a in unused
    ]
    if any(
        a.startswith("secretsmanager:Create") or a.startswith("secretsmanager:Put") for a in granted
    ):
        problems.append("API role may write secrets, but no code keeps device keys there")
    return problems


def test_iot_core_api_role_grants_exactly_what_the_issuer_calls(stack: Stack) -> None:
    needed = issuer_actions()
    assert {"iot:CreatePolicy", "iot:CreateKeysAndCertificate", "iot:AttachPolicy"} <= needed
    iam = stack.client("iam")
    doc = iam.get_role_policy(
        RoleName=f"{stack.name}-provision-api-task", PolicyName="provision_api-least-privilege"
    )["PolicyDocument"]
    statements = (json.loads(doc) if isinstance(doc, str) else doc)["Statement"]
    assert iot_grant_problems(statements, needed) == []
    # The old grants: no CreatePolicy, a Secrets Manager path for device keys no code writes.
    old = [
        {"Effect": "Allow", "Action": sorted(needed - {"iot:CreatePolicy"})},
        {
            "Effect": "Allow",
            "Action": ["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue"],
        },
    ]
    assert iot_grant_problems(old, needed) == [
        "API role lacks iot:CreatePolicy",
        "API role may write secrets, but no code keeps device keys there",
    ]


def test_devices_are_told_the_iot_data_endpoint(stack: Stack) -> None:
    endpoint = stack.client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    (api,) = stack.task_definition(f"{stack.name}-provision-api")["containerDefinitions"]
    env = {e["name"]: e["value"] for e in api["environment"]}
    assert env["FLEETPULSE_CREDENTIALS_BACKEND"] == "iot-core"
    # moto invents a new endpoint id per call: the shape is what can be compared.
    shape = rf"[a-z0-9]{{14}}-ats\.iot\.{REGION}\.amazonaws\.com"
    assert re.fullmatch(shape, endpoint) and re.fullmatch(shape, env["FLEETPULSE_MQTT_PUBLIC_HOST"])
    assert env["FLEETPULSE_MQTT_PUBLIC_PORT"] == "8883"
    assert env["FLEETPULSE_OIDC_ISSUER"] == "https://api.fleetpulse.test/auth/realms/fleetpulse"
    assert stack.output("mqtt_endpoint") == f"mqtts://{env['FLEETPULSE_MQTT_PUBLIC_HOST']}:8883"
    assert env["FLEETPULSE_IOT_POLICY_NAME"] == f"{stack.name}-device"


# --- console access logs --------------------------------------------------------------------


def access_log_problems(
    source_bucket: str, logging: dict[str, Any], target_policy: dict[str, Any]
) -> list[str]:
    enabled = logging.get("LoggingEnabled")
    if not enabled:
        return [f"{source_bucket}: no access logging"]
    prefix = enabled.get("TargetPrefix", "")
    target = f"arn:aws:s3:::{enabled['TargetBucket']}/{prefix}"
    for st in target_policy.get("Statement", []):
        principal = st.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if (
            st.get("Effect") == "Allow"
            and "logging.s3.amazonaws.com" in services
            and "s3:PutObject" in actions
            and any(target.startswith(r.rstrip("*")) for r in resources)
        ):
            return []
    return [
        f"{source_bucket}: the policy of {enabled['TargetBucket']} does not admit logging.s3.amazonaws.com under {prefix}"
    ]


def test_console_access_logs_go_to_a_bucket_that_admits_s3_logging(stack: Stack) -> None:
    s3 = stack.client("s3")
    console = stack.output("console_bucket")
    logging = s3.get_bucket_logging(Bucket=console)
    target = logging["LoggingEnabled"]["TargetBucket"]
    policy = json.loads(s3.get_bucket_policy(Bucket=target)["Policy"])
    assert access_log_problems(console, logging, policy) == []
    old = {"Statement": [s for s in policy["Statement"] if s.get("Sid") != "S3ServerAccessLogs"]}
    assert len(access_log_problems(console, logging, old)) == 1


# --- email, alarms, dashboard ---------------------------------------------------------------


def test_delivery_worker_gets_smtp_from_secrets_manager(stack: Stack) -> None:
    (worker,) = stack.task_definition(f"{stack.name}-delivery-worker")["containerDefinitions"]
    refs = {s["name"]: s["valueFrom"] for s in worker["secrets"]}
    env = {e["name"]: e["value"] for e in worker["environment"]}
    assert {f"FLEETPULSE_SMTP_{k}" for k in ("HOST", "PORT", "USERNAME", "PASSWORD")} <= set(refs)
    assert env["FLEETPULSE_SMTP_STARTTLS"] == "true" and "@" in env["FLEETPULSE_SMTP_FROM"]
    secret_arn = refs["FLEETPULSE_SMTP_HOST"].removesuffix(":host::")
    doc = json.loads(
        stack.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    )
    assert doc["host"] == f"email-smtp.{REGION}.amazonaws.com" and doc["port"] == "587"
    assert doc["username"].startswith("AKIA") or len(doc["username"]) >= 16
    assert len(doc["password"]) >= 40  # SES SMTP password v4, derived from the access key
    for name, ref in refs.items():
        if name.startswith("FLEETPULSE_SMTP_"):
            key = ref.rsplit(":", 3)[-3]
            assert key in doc, f"{name} refers to key {key}, absent from the SMTP secret"


def test_queue_depth_and_age_alarms_and_a_dashboard(stack: Stack) -> None:
    prefix = stack.output("queue_prefix")
    alarms = stack.client("cloudwatch").describe_alarms(AlarmNamePrefix=stack.name)["MetricAlarms"]
    watched = {
        (a["MetricName"], d["Value"])
        for a in alarms
        for d in a["Dimensions"]
        if d["Name"] == "QueueName"
    }
    for queue in CONTRACT_QUEUES:
        assert ("ApproximateNumberOfMessagesVisible", prefix + queue) in watched
        assert ("ApproximateAgeOfOldestMessage", prefix + queue) in watched
        assert ("ApproximateNumberOfMessagesVisible", prefix + queue + "-dlq") in watched
    assert all(a["AlarmActions"] for a in alarms)
    body = json.loads(
        stack.client("cloudwatch").get_dashboard(DashboardName=stack.output("dashboard_name"))[
            "DashboardBody"
        ]
    )
    text = json.dumps(body)
    for queue in CONTRACT_QUEUES:
        assert f'"{prefix}{queue}"' in text and f'"{prefix}{queue}-dlq"' in text
    for svc in sorted(set(service_dirs()) - SCHEDULED_TASKS):  # services, not scheduled tasks
        assert f'"{stack.name}-{svc.replace("_", "-")}"' in text


def test_plan_only_resource_types_are_the_documented_ones(stack: Stack) -> None:
    """What var.emulator leaves out is exactly what README lists (moto cannot hold them)."""
    readme = (REPO / "infra/terraform/README.md").read_text()
    gated = set()
    for path in (REPO / "infra/terraform").glob("*.tf"):
        pattern = (
            r'resource "(\w+)" "\w+" \{\n(?:\s*#.*\n)*\s*(?:count|for_each)\s*=[^\n]*var\.emulator'
        )
        for m in re.finditer(pattern, path.read_text()):
            gated.add(m.group(1))
    assert gated == EMULATOR_PLAN_ONLY
    for rtype in gated:
        assert f"`{rtype}`" in readme
