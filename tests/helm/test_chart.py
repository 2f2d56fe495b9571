"""The Helm chart, checked with the real helm, kubeconform and ``livetables check``.

helm and kubeconform come from ``.tools/bin`` (``make helm-tools``) or PATH; a missing tool
fails the tests. kubeconform validates offline against the Kubernetes JSON schemas that the
PyPI package kubernetes-validate ships (rewritten here into the file layout kubeconform
reads), and against strict subsets of the ServiceMonitor, PrometheusRule and HTTPRoute CRDs
kept in ``tests/helm/crd-schemas``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from service.config import (
    ColumnType,
    DashboardConfig,
    KafkaConfig,
    LivetablesConfig,
    PanelConfig,
    ServerConfig,
    TableConfig,
)
from service.web.assets import files_to_ship

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "livetables"
CI_VALUES = {p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*.yaml"))}
HERE = Path(__file__).parent
BAD_VALUES = HERE / "values"
CRD_SCHEMAS = HERE / "crd-schemas"
ALERT_RULES = ROOT / "alerts" / "livetables-rules.yaml"
RELEASE = "lt"
NAMESPACE = "trading"
FULLNAME = f"{RELEASE}-livetables"
# Kubernetes versions the manifests are validated against (kubernetes-validate ships them).
KUBE_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
TLS_DIR = "/etc/livetables/kafka-tls"

# Credentials given as values, made up per run: the chart must put them in a Secret only.
SASL_USER = f"user-{secrets.token_hex(4)}"
SASL_PASSWORD = secrets.token_urlsafe(24)
CREDENTIALS_FROM_VALUES = [
    "--set-string",
    f"kafka.sasl.username={SASL_USER}",
    "--set-string",
    f"kafka.sasl.password={SASL_PASSWORD}",
    "--set",
    "kafka.sasl.enabled=true,kafka.sasl.mechanism=PLAIN,kafka.tls.enabled=true",
    "--set-string",
    "kafka.tls.ca=-----BEGIN CERTIFICATE-----made-up-----END CERTIFICATE-----",
]
# The one value the defaults lack: a table (the chart refuses to install without one).
ONE_TABLE = [
    "--set",
    "config.tables.t.topic=t",
    "--set-json",
    'config.tables.t.schema={"id":"string"}',
]
# Every values set the chart must accept: (values files, extra helm arguments).
CASES: dict[str, tuple[list[Path], list[str]]] = {
    "default": ([], ONE_TABLE),
    **{name: ([path], []) for name, path in CI_VALUES.items()},
    "credentials-from-values": ([CI_VALUES["minimal"]], CREDENTIALS_FROM_VALUES),
}
CONFIGURED = list(CASES)


# ---------------------------------------------------------------------------------------------
# tools and helpers


def _tool(name: str) -> str:
    local = ROOT / ".tools" / "bin" / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(
        f"{name} is not installed: run `make helm-tools` (scripts/install-helm-tools.sh puts "
        f"it in .tools/bin), or put {name} on PATH",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def helm() -> str:
    return _tool("helm")


@pytest.fixture(scope="session")
def kubeconform() -> str:
    return _tool("kubeconform")


@pytest.fixture(scope="session")
def kube_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubernetes-validate's strict schemas, with references kubeconform can follow offline.

    The package's files refer to ``/api/_definitions.json`` under an https ``$id``; here each
    file loses its ``$id`` and refers to the ``_definitions.json`` beside it.
    """
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(
            "the Python package kubernetes-validate is missing: pip install -e '.[dev]'",
            pytrace=False,
        )
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    target = tmp_path_factory.mktemp("kubernetes-json-schema")
    for version in KUBE_VERSIONS:
        src = source / f"v{version}-local-strict"
        if not src.is_dir():
            pytest.fail(f"kubernetes-validate has no schemas for Kubernetes {version}")
        dst = target / f"v{version}-local-strict"
        dst.mkdir()
        for path in src.glob("*.json"):
            text = path.read_text(encoding="utf-8")
            doc = json.loads(text.replace('"/api/_definitions.json#', '"_definitions.json#'))
            doc.pop("$id", None)
            (dst / path.name).write_text(json.dumps(doc), encoding="utf-8")
    return target


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, **kwargs)


def template_args(helm: str, files: list[Path], extra: list[str], kube: str) -> list[str]:
    args = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", kube]
    for path in files:
        args += ["--values", str(path)]
    return args + extra


def render(
    helm: str, files: Sequence[Path] = (), extra: Sequence[str] = (), kube: str = KUBE_VERSIONS[-1]
) -> list[dict[str, Any]]:
    result = run(template_args(helm, list(files), list(extra), kube))
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_case(helm: str, case: str) -> list[dict[str, Any]]:
    files, extra = CASES[case]
    return render(helm, files, extra)


def render_fails(helm: str, files: Sequence[Path] = (), extra: Sequence[str] = ()) -> str:
    result = run(template_args(helm, list(files), list(extra), KUBE_VERSIONS[-1]))
    assert result.returncode != 0, "helm template accepted values it should reject"
    return result.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str = FULLNAME) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(
        f"no {kind} {name} among {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {doc["kind"] for doc in docs}


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment")["spec"]["template"]["spec"]


def livetables_yaml(docs: list[dict[str, Any]]) -> str:
    return find(docs, "ConfigMap")["data"]["livetables.yaml"]


def clean_env() -> dict[str, str]:
    """This process's environment without LIVETABLES_ variables, which would override files."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LIVETABLES_")}


def livetables_check(
    path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "service.cli", "check", "--config", str(path)]
    return run(args, env={**clean_env(), **(env or {})})


def secret_env(docs: list[dict[str, Any]], pod: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would set it.

    A secretKeyRef to a Secret the chart renders takes its value from there; one to an
    existing Secret takes the made-up value ``<secret>/<key>``.
    """
    rendered = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    env = {}
    for var in pod["containers"][0].get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        if ref["name"] in rendered:
            data = rendered[ref["name"]]["data"][ref["key"]]
            env[var["name"]] = base64.b64decode(data).decode()
        else:
            env[var["name"]] = f"{ref['name']}/{ref['key']}"
    return env


# ---------------------------------------------------------------------------------------------
# helm lint, kubeconform, livetables check


def test_the_ci_value_sets_are_all_there() -> None:
    assert {
        "minimal",
        "sasl-tls-secret",
        "ingress-monitoring-scaling",
        "grafana-dashboard",
        "httproute",
        "persistence",
    } <= set(CI_VALUES)


def test_lint_default_values(helm: str) -> None:
    result = run([helm, "lint", "--strict", str(CHART)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(CI_VALUES))
def test_lint_ci_values(helm: str, name: str) -> None:
    result = run([helm, "lint", "--strict", str(CHART), "--values", str(CI_VALUES[name])])
    assert result.returncode == 0, result.stdout + result.stderr


def kubeconform_run(
    kubeconform: str, schemas: Path, kube: str, manifests: str
) -> subprocess.CompletedProcess[str]:
    """kubeconform -strict, offline: no schema is fetched, a kind without one is an error."""
    return run(
        [
            kubeconform,
            "-strict",
            "-summary",
            "-kubernetes-version",
            kube,
            "-schema-location",
            f"{schemas.as_uri()}/"
            "{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/"
            "{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-schema-location",
            f"{CRD_SCHEMAS.as_uri()}/"
            "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
            "-",
        ],
        input=manifests,
    )


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_are_valid_kubernetes(
    helm: str, kubeconform: str, kube_schemas: Path, case: str, kube: str
) -> None:
    files, extra = CASES[case]
    rendered = run(template_args(helm, files, extra, kube))
    assert rendered.returncode == 0, rendered.stderr
    result = kubeconform_run(kubeconform, kube_schemas, kube, rendered.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(
        r"(\d+) resources found.*Invalid: (\d+), Errors: (\d+), Skipped: (\d+)", result.stdout
    )
    assert summary, result.stdout
    found, invalid, errors, skipped = map(int, summary.groups())
    assert found >= 4 and invalid == errors == skipped == 0, result.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("podSecurityContext.runAsUserr=1", "additional properties 'runAsUserr' not allowed"),
        ("lifecycle.preStop.sleep.seconds=x", "got string, want integer"),
        (
            "serviceMonitor.enabled=true,serviceMonitor.relabelings[0].actionn=drop",
            "additional properties 'actionn' not allowed",
        ),
    ],
)
def test_kubeconform_catches_what_kubernetes_would_refuse(
    helm: str, kubeconform: str, kube_schemas: Path, setting: str, message: str
) -> None:
    kube = KUBE_VERSIONS[-1]
    extra = ["--set", setting]
    rendered = run(template_args(helm, [CI_VALUES["minimal"]], extra, kube))
    assert rendered.returncode == 0, rendered.stderr
    result = kubeconform_run(kubeconform, kube_schemas, kube, rendered.stdout)
    assert result.returncode != 0
    assert message in result.stdout, result.stdout


@pytest.mark.parametrize("case", CONFIGURED)
def test_rendered_config_passes_livetables_check(helm: str, case: str, tmp_path: Path) -> None:
    docs = render_case(helm, case)
    path = tmp_path / "livetables.yaml"
    path.write_text(livetables_yaml(docs), encoding="utf-8")
    result = livetables_check(path, secret_env(docs, pod_spec(docs)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{path}: OK" in result.stdout


@pytest.mark.parametrize("tables", [[], ["--set", "config.tables=null"]])
def test_default_values_fail_at_install_naming_config_tables(helm: str, tables: list[str]) -> None:
    """Without a table livetables refuses to start: the install refuses first, not a crash loop."""
    stderr = render_fails(helm, (), tables)
    assert "config.tables: no tables configured" in stderr
    assert "topic: trades" in stderr, "the message shows how to list a table"


# ---------------------------------------------------------------------------------------------
# values that must be rejected, with a clear message


def test_broken_table_config_is_rejected_by_the_schema(helm: str) -> None:
    stderr = render_fails(helm, [BAD_VALUES / "broken-column-type-values.yaml"])
    assert "values don't meet the specifications of the schema" in stderr
    assert "/config/tables/trades/schema/px" in stderr
    assert "'yesterday' does not match" in stderr


def test_inconsistent_table_config_is_rejected_by_livetables_check(
    helm: str, tmp_path: Path
) -> None:
    docs = render(helm, [BAD_VALUES / "inconsistent-table-values.yaml"])
    path = tmp_path / "livetables.yaml"
    path.write_text(livetables_yaml(docs), encoding="utf-8")
    result = livetables_check(path)
    assert result.returncode == 2, result.stdout
    assert "tables.trades: index and limit cannot be combined" in result.stderr
    assert "tables.quotes: index 'symbol' is not a column of the schema" in result.stderr


def test_misspelled_top_level_key_is_rejected(helm: str) -> None:
    values = BAD_VALUES / "misspelled-key-values.yaml"
    stderr = render_fails(helm, [values])
    assert "additional properties 'replicas' not allowed" in stderr
    lint = run([helm, "lint", "--strict", str(CHART), "--values", str(values)])
    assert lint.returncode != 0
    assert "additional properties 'replicas' not allowed" in lint.stdout + lint.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("ingress.enable=true", "additional properties 'enable' not allowed"),
        ("kafka.sasl.existingsecret=x", "additional properties 'existingsecret' not allowed"),
        ("config.tables.t.shema.a=string", "additional properties 'shema' not allowed"),
        ("config.server.prot=8080", "additional properties 'prot' not allowed"),
        ("service.type=Ingress", "value must be one of"),
    ],
)
def test_nested_typos_are_rejected(helm: str, setting: str, message: str) -> None:
    stderr = render_fails(helm, [CI_VALUES["minimal"]], ["--set", setting])
    assert message in stderr


def test_credentials_in_the_config_are_rejected(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump({"config": {"kafka": {"client": {"sasl.password": "x"}}}}),
        encoding="utf-8",
    )
    stderr = render_fails(helm, [CI_VALUES["minimal"], values])
    assert "config.kafka.client.sasl.password: credentials must not be written" in stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("kafka.sasl.enabled=true", "kafka.sasl: set existingSecret"),
        (
            "kafka.tls.enabled=true,kafka.tls.existingSecret=tls,kafka.tls.certKey=tls.crt",
            "kafka.tls: mutual TLS needs both certKey and keyKey",
        ),
        ("kafka.tls.enabled=true,kafka.tls.key=PEM", "kafka.tls: mutual TLS needs both cert"),
    ],
)
def test_incomplete_kafka_credentials_are_rejected(helm: str, setting: str, message: str) -> None:
    stderr = render_fails(helm, [CI_VALUES["minimal"]], ["--set", setting])
    assert message in stderr


def test_httproute_needs_a_gateway(helm: str) -> None:
    stderr = render_fails(helm, [CI_VALUES["minimal"]], ["--set", "httpRoute.enabled=true"])
    assert "httpRoute.parentRefs" in stderr


# ---------------------------------------------------------------------------------------------
# Kafka credentials


def test_credentials_from_existing_secrets_reach_librdkafka(helm: str, tmp_path: Path) -> None:
    docs = render_case(helm, "sasl-tls-secret")
    assert "Secret" not in kinds(docs), "existing Secrets must not be re-created"
    pod = pod_spec(docs)
    path = tmp_path / "livetables.yaml"
    path.write_text(livetables_yaml(docs), encoding="utf-8")
    probe = (
        "import json, sys\n"
        "from service.config import load_config\n"
        "print(json.dumps(load_config(sys.argv[1]).kafka.client))\n"
    )
    result = run(
        [sys.executable, "-c", probe, str(path)], env={**clean_env(), **secret_env(docs, pod)}
    )
    assert result.returncode == 0, result.stderr
    client = json.loads(result.stdout)
    assert client["security.protocol"] == "SASL_SSL"
    assert client["sasl.mechanism"] == "SCRAM-SHA-512"
    assert client["sasl.username"] == "livetables-kafka-user/user"
    assert client["sasl.password"] == "livetables-kafka-user/password"
    assert client["ssl.key.password"] == "livetables-kafka-tls/key-password"
    # The user's own librdkafka properties are kept beside the derived ones.
    assert client["client.id"] == "livetables"
    # Every file librdkafka is told about is mounted there from the TLS Secret.
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "kafka-tls")
    assert mount["mountPath"] == TLS_DIR and mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "kafka-tls")["secret"]
    assert volume["secretName"] == "livetables-kafka-tls"
    files = {f"{TLS_DIR}/{item['path']}": item["key"] for item in volume["items"]}
    assert files == {
        client["ssl.ca.location"]: "ca.crt",
        client["ssl.certificate.location"]: "tls.crt",
        client["ssl.key.location"]: "tls.key",
    }


def test_credentials_from_values_go_into_a_secret_only(helm: str) -> None:
    docs = render_case(helm, "credentials-from-values")
    secret = find(docs, "Secret", f"{FULLNAME}-kafka")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["username"] == SASL_USER and data["password"] == SASL_PASSWORD
    assert data["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    for doc in docs:
        if doc["kind"] != "Secret":
            assert SASL_PASSWORD not in yaml.safe_dump(doc), f"password in {doc['kind']}"
    config = yaml.safe_load(livetables_yaml(docs))
    assert config["kafka"]["client"] == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "ssl.ca.location": f"{TLS_DIR}/ca.crt",
    }
    pod = pod_spec(docs)
    env = secret_env(docs, pod)
    assert env["LIVETABLES_KAFKA__CLIENT__sasl.username"] == SASL_USER
    assert env["LIVETABLES_KAFKA__CLIENT__sasl.password"] == SASL_PASSWORD
    # A change of the credentials rolls the pods, like a change of the config.
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" in annotations


def test_bootstrap_servers_value_overrides_the_config(helm: str) -> None:
    config = yaml.safe_load(livetables_yaml(render_case(helm, "minimal")))
    assert config["kafka"]["bootstrap_servers"] == "kafka-bootstrap.kafka.svc:9092"


# ---------------------------------------------------------------------------------------------
# the Deployment


def test_config_change_rolls_the_pods(helm: str) -> None:
    def checksum(*extra: str) -> str:
        docs = render(helm, [CI_VALUES["minimal"]], list(extra))
        return find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "config.tables.events.limit=5000")


def test_config_is_mounted_where_the_image_reads_it(helm: str) -> None:
    docs = render_case(helm, "minimal")
    container = pod_spec(docs)["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/etc/livetables/livetables.yaml"
    assert mount["subPath"] == "livetables.yaml" and mount["readOnly"] is True
    assert "command" not in container and "args" not in container
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert entrypoint, "the Dockerfile has no ENTRYPOINT"
    assert json.loads(entrypoint.group(1)) == [
        "livetables",
        "serve",
        "--config",
        mount["mountPath"],
    ]


def test_pods_run_under_the_restricted_pod_security_standard(helm: str) -> None:
    docs = render_case(helm, "sasl-tls-secret")
    test_pod = find(docs, "Pod", f"{FULLNAME}-test-readyz")["spec"]
    for spec in (pod_spec(docs), test_pod):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["runAsNonRoot"] is True
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            tmp = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
            assert "emptyDir" in tmp
    # The image's user is the one the chart runs as.
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert user, "the Dockerfile must name its user by number"
    context = pod_spec(docs)["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == tuple(map(int, user.groups()))


def test_probes_cover_catch_up_readiness_and_liveness(helm: str) -> None:
    spec = pod_spec(render_case(helm, "minimal"))
    container = spec["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    startup, ready, live = (
        container["startupProbe"],
        container["readinessProbe"],
        container["livenessProbe"],
    )
    assert startup["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ready["httpGet"] == {"path": "/readyz", "port": "http"}
    assert live["httpGet"] == {"path": "/healthz", "port": "http"}
    # The initial catch-up gets minutes, not the seconds a liveness probe allows.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert spec["terminationGracePeriodSeconds"] >= 10
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]


def test_container_port_follows_the_configured_port(helm: str) -> None:
    docs = render(helm, [CI_VALUES["minimal"]], ["--set", "config.server.port=9000"])
    assert pod_spec(docs)["containers"][0]["ports"][0]["containerPort"] == 9000
    assert yaml.safe_load(livetables_yaml(docs))["server"]["port"] == 9000


def test_snapshots_go_to_a_claim_shared_by_the_replicas(helm: str) -> None:
    docs = render_case(helm, "persistence")
    config = yaml.safe_load(livetables_yaml(docs))
    assert config["snapshots"] == {"dir": "/var/lib/livetables", "interval": "15s"}
    spec = pod_spec(docs)
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "snapshots")
    assert mount["mountPath"] == "/var/lib/livetables" and not mount.get("readOnly")
    volume = next(v for v in spec["volumes"] if v["name"] == "snapshots")
    claim = find(docs, "PersistentVolumeClaim", f"{FULLNAME}-snapshots")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_snapshots_in_an_emptydir_and_in_an_existing_claim(helm: str) -> None:
    on = ["--set", "persistence.enabled=true,persistence.emptyDir.sizeLimit=4Gi"]
    docs = render(helm, [CI_VALUES["minimal"]], on)
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "snapshots")
    assert volume == {"name": "snapshots", "emptyDir": {"sizeLimit": "4Gi"}}
    assert "PersistentVolumeClaim" not in kinds(docs)
    assert yaml.safe_load(livetables_yaml(docs))["snapshots"]["interval"] == "30s"
    existing = [*on, "--set", "persistence.type=persistentVolumeClaim"]
    existing += ["--set", "persistence.persistentVolumeClaim.existingClaim=snaps"]
    docs = render(helm, [CI_VALUES["minimal"]], existing)
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "snapshots")
    assert volume["persistentVolumeClaim"]["claimName"] == "snaps"
    assert "PersistentVolumeClaim" not in kinds(docs)
    assert "snapshots" not in yaml.safe_load(livetables_yaml(render_case(helm, "minimal")))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            "persistence.enabled=true,persistence.type=persistentVolumeClaim,replicaCount=3,"
            "persistence.persistentVolumeClaim.accessModes[0]=ReadWriteOnce",
            "must be ReadWriteMany",
        ),
        ("config.snapshots.dir=/data", "snapshots need a volume"),
    ],
)
def test_snapshot_settings_that_cannot_work_are_refused(
    helm: str, settings: str, message: str
) -> None:
    assert message in render_fails(helm, [CI_VALUES["minimal"]], ["--set", settings])


# ---------------------------------------------------------------------------------------------
# optional resources


def test_ingress_monitoring_and_scaling(helm: str) -> None:
    docs = render_case(helm, "ingress-monitoring-scaling")
    assert {
        "Ingress",
        "ServiceMonitor",
        "PrometheusRule",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    } <= kinds(docs)
    ingress = find(docs, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    monitor = find(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == find(docs, "Service")["spec"]["selector"]
    hpa = find(docs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert "replicas" not in find(docs, "Deployment")["spec"], "the HPA owns the replica count"
    assert find(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_httproute_sends_everything_to_the_service(helm: str) -> None:
    route = find(render_case(helm, "httproute"), "HTTPRoute")
    assert route["spec"]["parentRefs"][0]["name"] == "public"
    assert route["spec"]["hostnames"] == ["livetables.example.com"]
    for rule in route["spec"]["rules"]:
        assert rule["backendRefs"] == [{"name": FULLNAME, "port": 8080}]


def test_grafana_dashboard_configmap_for_the_sidecar(helm: str) -> None:
    docs = render_case(helm, "grafana-dashboard")
    configmap = find(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    chart_copy = (CHART / "dashboards" / "livetables.json").read_text(encoding="utf-8")
    assert configmap["data"]["livetables.json"] == chart_copy
    assert json.loads(configmap["data"]["livetables.json"])["title"]


def test_dashboard_in_the_chart_is_the_one_in_grafana() -> None:
    source = ROOT / "grafana" / "livetables.json"
    chart_copy = CHART / "dashboards" / "livetables.json"
    assert source.is_file(), "grafana/livetables.json is missing"
    assert chart_copy.read_bytes() == source.read_bytes(), (
        "helm/livetables/dashboards/livetables.json differs from grafana/livetables.json: "
        "cp grafana/livetables.json helm/livetables/dashboards/livetables.json"
    )


def test_prometheus_rule_holds_the_alerts_rules_file(helm: str) -> None:
    rule = find(render_case(helm, "ingress-monitoring-scaling"), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    source = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    for group in source["groups"]:
        for alert in group["rules"]:
            alert["labels"] = {**alert.get("labels", {}), "team": "trading"}
    assert rule["spec"] == source


def test_prometheus_rule_loads_in_prometheus(helm: str, tmp_path: Path) -> None:
    """What the operator hands Prometheus (the spec as a rules file) passes promtool."""
    promtool = _tool("promtool")
    rule = find(render_case(helm, "ingress-monitoring-scaling"), "PrometheusRule")
    path = tmp_path / "rendered-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    groups = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    count = sum(len(group["rules"]) for group in groups)
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_prometheus_rule_schema_refuses_a_misspelled_field(
    kubeconform: str, kube_schemas: Path, helm: str
) -> None:
    """The CRD schema is strict, so the validation of the rendered rule means something."""
    rule = find(render_case(helm, "ingress-monitoring-scaling"), "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["expresion"] = rule["spec"]["groups"][0]["rules"][0].pop(
        "expr"
    )
    result = kubeconform_run(kubeconform, kube_schemas, KUBE_VERSIONS[-1], yaml.safe_dump(rule))
    assert result.returncode != 0
    assert "expresion" in result.stdout, result.stdout


def test_alerts_in_the_chart_are_the_ones_in_the_repository() -> None:
    chart_copy = CHART / "alerts" / "livetables-rules.yaml"
    assert chart_copy.read_bytes() == ALERT_RULES.read_bytes(), (
        "helm/livetables/alerts/livetables-rules.yaml differs from alerts/livetables-rules.yaml: "
        "cp alerts/livetables-rules.yaml helm/livetables/alerts/livetables-rules.yaml"
    )


def test_optional_resources_are_off_by_default(helm: str) -> None:
    docs = render_case(helm, "default")
    assert kinds(docs) == {"ServiceAccount", "ConfigMap", "Service", "Deployment", "Pod"}


def test_helm_test_hook_asks_readyz_of_the_service(helm: str) -> None:
    docs = render_case(helm, "minimal")
    pod = find(docs, "Pod", f"{FULLNAME}-test-readyz")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["image"] == pod_spec(docs)["containers"][0]["image"]
    assert container["command"][-1] == f"http://{FULLNAME}.{NAMESPACE}.svc:8080/readyz"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_notes_say_how_to_reach_the_dashboards(helm: str, tmp_path: Path) -> None:
    # NOTES.txt is not part of `helm template` output: render it through a copy of the chart.
    chart = tmp_path / "livetables"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "notes-under-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n',
        encoding="utf-8",
    )

    def notes(values: Path) -> str:
        args = [helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE]
        args += ["--values", str(values), "--show-only", "templates/notes-under-test.yaml"]
        result = run(args)
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(result.stdout)["data"]["notes"]

    text = notes(CI_VALUES["sasl-tls-secret"])
    assert f"kubectl --namespace {NAMESPACE} port-forward service/{FULLNAME} 8080:8080" in text
    assert "http://127.0.0.1:8080/dashboards/desk" in text
    assert "http://127.0.0.1:8080/tables/trades" in text
    behind_ingress = notes(CI_VALUES["ingress-monitoring-scaling"])
    assert "https://livetables.example.com/" in behind_ingress
    assert "livetables.example.com/" in notes(CI_VALUES["httproute"])
    # Behind a proxy without trusted_proxies, every user shares the proxy's per-address caps.
    assert "trusted_proxies is empty" in behind_ingress
    assert "trusted_proxies" not in text
    trusted = tmp_path / "trusted.yaml"
    values = yaml.safe_load(CI_VALUES["ingress-monitoring-scaling"].read_text(encoding="utf-8"))
    values.setdefault("config", {}).setdefault("server", {})["trusted_proxies"] = ["10.0.0.0/8"]
    trusted.write_text(yaml.safe_dump(values), encoding="utf-8")
    assert "trusted_proxies is empty" not in notes(trusted)


# ---------------------------------------------------------------------------------------------
# the schema and the README keep up with livetables and the values


def _fields(model: type) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_values_schema_knows_the_livetables_config() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    defs = schema["definitions"]
    config = defs["config"]["properties"]
    assert set(config) == _fields(LivetablesConfig)
    assert set(config["kafka"]["properties"]) == _fields(KafkaConfig)
    assert set(config["server"]["properties"]) == _fields(ServerConfig)
    assert set(defs["table"]["properties"]) == _fields(TableConfig)
    assert set(defs["dashboard"]["properties"]) == _fields(DashboardConfig)
    assert set(defs["panel"]["properties"]) == _fields(PanelConfig)
    assert defs["columnType"]["enum"] == list(get_args(ColumnType))
    assert schema["additionalProperties"] is False


# Values that hold a livetables or Kubernetes object, documented as a whole.
OPAQUE_VALUES = {
    "config",
    "deployment.strategy",
    "podSecurityContext",
    "securityContext",
    "resources",
    "ingress.annotations",
    "grafanaDashboard.labels",
    "tests.resources",
}


def _leaf_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict) and value and path not in OPAQUE_VALUES:
        return [
            leaf
            for key, child in value.items()
            for leaf in _leaf_paths(child, f"{path}.{key}".lstrip("."))
        ]
    return [path]


def test_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    missing = [path for path in _leaf_paths(values) if f"`{path}`" not in readme]
    assert not missing, f"values not documented in helm/livetables/README.md: {missing}"


def test_docker_context_holds_what_the_image_is_built_from() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            source = source.rstrip("/")
            assert source in allowed or any(a.startswith(f"{source}/") for a in allowed), (
                f"{source} is copied but left out by .dockerignore"
            )
    # The browser files the package carries, each let in by name (podman does not look into
    # a left-out directory for wildcard matches).
    shipped = {f"node_modules/@perspective-dev/{name}" for name in files_to_ship()}
    assert shipped <= allowed, shipped - allowed


def test_runtime_image_has_no_build_tools() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)
    runtime = next(stage for stage in stages if re.match(r"\S+ AS runtime\b", stage))
    assert stages[-1] is runtime, "the runtime stage must be the last (the default target)"
    for tool in ("apt-get install", "pip install", "gcc", "build-essential", "npm"):
        assert tool not in runtime, f"the runtime stage runs {tool}"
    # The browser files come inside the package (service/web/vendor), not from a side path.
    assert "LIVETABLES_ASSETS" not in runtime
    assert re.search(r"^COPY --from=build /opt/livetables-app ", runtime, re.M)
