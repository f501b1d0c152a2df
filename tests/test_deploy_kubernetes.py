"""The Kubernetes manifests under deploy/: valid objects whose config the monitor takes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.deploy_support import (
    K8S,
    ROOT,
    configmap_config,
    container,
    env_names_read_by,
    load_yaml,
    load_yaml_docs,
    manifests,
)

# ---------------------------------------------------------------------------------------------
# Kubernetes


class TestKubernetesManifests:
    def test_every_manifest_parses_into_named_objects(self) -> None:
        files = sorted(K8S.glob("*.yaml"))
        assert files
        for path in files:
            docs = load_yaml_docs(path)
            assert docs, path.name
            for doc in docs:
                assert doc["apiVersion"], path.name
                assert doc["kind"], path.name
                if doc["kind"] != "Kustomization":
                    assert doc["metadata"]["name"], path.name
                    assert "namespace" not in doc["metadata"], path.name

    def test_the_kustomization_lists_existing_files_and_not_the_placeholder_secret(self) -> None:
        resources = load_yaml(K8S / "kustomization.yaml")["resources"]
        for name in resources:
            assert (K8S / name).is_file(), name
        assert {"deployment.yaml", "service.yaml", "configmap.yaml", "pvc.yaml"} <= set(resources)
        assert "secret.example.yaml" not in resources

    def test_the_deployment_probes_ready_and_healthy_on_the_http_port(self) -> None:
        main = container(manifests()["Deployment"])
        ports = {port["name"]: port["containerPort"] for port in main["ports"]}
        assert ports == {"http": 9877}
        assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
        assert main["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}

    def test_the_deployment_runs_one_non_root_replica_with_a_read_only_root(self) -> None:
        deployment = manifests()["Deployment"]
        spec = deployment["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"]["type"] == "Recreate"
        pod = spec["template"]["spec"]
        main = container(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert main["securityContext"]["readOnlyRootFilesystem"] is True
        assert main["securityContext"]["allowPrivilegeEscalation"] is False
        assert main["resources"]["requests"]
        assert main["resources"]["limits"]
        assert main["args"] == ["run", "-c", "/etc/trtc-monitor/monitor.yaml"]

    def test_the_store_and_config_are_mounted_where_monitor_yaml_expects_them(self) -> None:
        objects = manifests()
        deployment = objects["Deployment"]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
        store_dir = str(Path(configmap_config()["storage"]["path"]).parent)
        data = volumes[mounts[store_dir]["name"]]
        assert not mounts[store_dir].get("readOnly", False)
        assert (
            data["persistentVolumeClaim"]["claimName"]
            == objects["PersistentVolumeClaim"]["metadata"]["name"]
        )
        config_dir = mounts["/etc/trtc-monitor"]
        assert (
            volumes[config_dir["name"]]["configMap"]["name"]
            == objects["ConfigMap"]["metadata"]["name"]
        )
        assert configmap_config()["server"]["listen"].endswith(":9877")

    def test_credentials_come_from_the_secret_into_the_env_vars_the_config_reads(self) -> None:
        objects = manifests()
        secret = objects["Secret"]
        env = {e["name"]: e for e in container(objects["Deployment"])["env"]}
        for name in env_names_read_by(configmap_config()):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"], name
            assert ref["key"] in secret["stringData"], name
        assert {"TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"} <= set(env)
        assert "secret_key:" not in (K8S / "configmap.yaml").read_text(encoding="utf-8")

    def test_the_secret_example_holds_only_marked_placeholders(self) -> None:
        for key, value in manifests()["Secret"]["stringData"].items():
            assert value.startswith("REPLACE_ME"), key

    def test_the_service_exposes_port_9877_named_http_to_the_pods(self) -> None:
        objects = manifests()
        service = objects["Service"]
        assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("http", 9877)]
        pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        selector = objects["Deployment"]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()

    def test_the_service_monitor_scrapes_the_http_port_of_the_service(self) -> None:
        objects = manifests()
        monitor = objects["ServiceMonitor"]
        service_labels = objects["Service"]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
        assert service_labels[monitor["spec"]["jobLabel"]] == "trtc-monitor"

    def test_the_configmap_config_passes_check_config(self, tmp_path: Path) -> None:
        path = tmp_path / "monitor.yaml"
        path.write_text(manifests()["ConfigMap"]["data"]["monitor.yaml"], encoding="utf-8")
        env = {
            **os.environ,
            **dict.fromkeys(env_names_read_by(configmap_config()), "placeholder"),
        }
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "check-config", "-c", str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
