"""The high-availability deployments under deploy/: the Kubernetes replicas and the compose
file, each with a configuration the monitor takes.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from monitor.config import Config, parse_config
from tests.deploy_support import DEPLOY, K8S_HA, env_names_read_by, load_yaml, load_yaml_docs

COMPOSE_HA = DEPLOY / "compose" / "compose.ha.yaml"
COMPOSE_HA_CONFIG = DEPLOY / "compose" / "monitor.ha.yaml"


def ha_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """The HA manifests' objects by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S_HA.glob("*.yaml")):
        for doc in load_yaml_docs(path):
            if doc["kind"] != "Kustomization":
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def _valid_config(text: str) -> Config:
    return parse_config(text)


class TestHighAvailabilityManifests:
    def test_the_kustomization_lists_every_file_but_the_placeholder_secret(self) -> None:
        resources = load_yaml(K8S_HA / "kustomization.yaml")["resources"]
        for name in resources:
            assert (K8S_HA / name).is_file(), name
        listed = set(resources) | {"secret.example.yaml", "kustomization.yaml"}
        assert {p.name for p in K8S_HA.glob("*.yaml")} == listed

    def test_redis_keeps_an_every_second_aof_on_its_own_volume(self) -> None:
        objects = ha_objects()
        redis = objects[("StatefulSet", "trtc-monitor-redis")]
        (main,) = redis["spec"]["template"]["spec"]["containers"]
        args = main["args"]
        assert args[args.index("--appendonly") + 1] == "yes"
        assert args[args.index("--appendfsync") + 1] == "everysec"
        assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
        data_dir = args[args.index("--dir") + 1]
        (claim,) = redis["spec"]["volumeClaimTemplates"]
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        assert mounts[data_dir] == claim["metadata"]["name"]
        service = objects[("Service", "trtc-monitor-redis")]
        assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]

    def test_the_daemon_runs_two_replicas_guarded_by_a_disruption_budget(self) -> None:
        objects = ha_objects()
        deployment = objects[("Deployment", "trtc-monitor")]
        spec = deployment["spec"]
        assert spec["replicas"] >= 2
        assert spec["strategy"]["type"] == "RollingUpdate"
        pdb = objects[("PodDisruptionBudget", "trtc-monitor")]
        assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
        assert 0 < pdb["spec"]["minAvailable"] < spec["replicas"]
        service = objects[("Service", "trtc-monitor")]
        assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
        pod = spec["template"]["spec"]
        assert "persistentVolumeClaim" not in json.dumps(pod["volumes"])
        (main,) = pod["containers"]
        assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}

    def test_the_config_is_valid_uses_redis_and_every_variable_comes_from_the_secret(
        self,
    ) -> None:
        objects = ha_objects()
        text = objects[("ConfigMap", "trtc-monitor")]["data"]["monitor.yaml"]
        config = _valid_config(text)
        assert config.storage.backend == "redis"
        assert config.cluster.member_timeout >= 2 * config.cluster.heartbeat
        (main,) = objects[("Deployment", "trtc-monitor")]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in main["env"]}
        secret = objects[("Secret", "trtc-monitor")]
        for name in env_names_read_by(yaml.safe_load(text)):
            assert env[name]["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"], name
        redis = objects[("StatefulSet", "trtc-monitor-redis")]["spec"]["template"]["spec"]
        (redis_main,) = redis["containers"]
        (password,) = redis_main["env"]
        assert password["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]
        assert all(v.startswith("REPLACE_ME") for v in secret["stringData"].values())


class TestHighAvailabilityCompose:
    def test_three_replicas_share_one_redis_with_an_every_second_aof(self) -> None:
        compose = load_yaml(COMPOSE_HA)
        services = compose["services"]
        monitors = [name for name in services if name.startswith("monitor-")]
        assert len(monitors) == 3
        command = services["redis"]["command"]
        assert command[command.index("--appendfsync") + 1] == "everysec"
        assert command[command.index("--appendonly") + 1] == "yes"
        assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
        published = [services[m]["ports"][0].split(":")[1] for m in monitors]
        assert len(set(published)) == 3
        for name in monitors:
            service = services[name]
            assert service["command"] == ["run", "-c", "/etc/trtc-monitor/monitor.yaml"]
            assert service["depends_on"]["redis"]["condition"] == "service_healthy"
            assert all(p.startswith("127.0.0.1:") for p in service["ports"])

    def test_the_replicas_config_is_valid_and_gets_every_variable_it_reads(self) -> None:
        text = COMPOSE_HA_CONFIG.read_text(encoding="utf-8")
        config = _valid_config(text)
        assert config.storage.backend == "redis"
        compose = load_yaml(COMPOSE_HA)
        env = compose["services"]["monitor-1"]["environment"]
        assert env_names_read_by(yaml.safe_load(text)) <= set(env)
        assert "@redis:6379/" in env["TRTC_MONITOR_REDIS_URL"]
        mounts = compose["services"]["monitor-1"]["volumes"]
        assert f"./{COMPOSE_HA_CONFIG.name}:/etc/trtc-monitor/monitor.yaml:ro" in mounts
