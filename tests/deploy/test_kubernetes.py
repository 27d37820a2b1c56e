"""deploy/kubernetes, rendered by the real ``kubectl kustomize`` and checked offline.

Every rendered object is validated against the Kubernetes API schemas (the
``kubernetes-validate`` package, strict: an unknown field fails) for the oldest version
the manifests support and the newest the validator knows. The PodMonitor is a custom
resource of the Prometheus operator, which those schemas do not cover: its fields are
checked here against the pods it selects. Then what saynad itself relies on: the shard
each pod runs, the probes on real routes of a real daemon, a grace period that outlasts
the drain, the configuration passing ``saynad check``, the credentials where
``${credential:NAME}`` reads them.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import trio
import yaml

from saynad import sharding
from saynad.app import STOP_GRACE_S
from saynad.config import Defaults
from saynad.config._values import parse_listen
from saynad.http import HEALTH_TIMEOUT_S
from tests.deploy._files import ROOT, credential_names, saynad_check
from tests.support.daemon import running_daemon, states, wait_until
from tests.support.processes import daemon_process, require_tool
from tests.support.samples import SECRET, signed_call
from tests.timing import HANG_S

KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "example"
TREES = {"base": BASE, "overlay": OVERLAY}

OLDEST_KUBERNETES = "1.30.0"
"""The oldest version the manifests use nothing newer than: the pod-index label (beta
in 1.28) and the preStop ``sleep`` action (beta, on by default, in 1.30)."""

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
TIMEOUT_S = 120  # hang guard for kubectl


@cache
def _render(tree: str) -> tuple[dict[str, Any], ...]:
    kubectl = require_tool("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(TREES[tree])],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _one(objects: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> Any:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def _container(objects: tuple[dict[str, Any], ...]) -> Any:
    (container,) = _one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container["env"]}


def _config(objects: tuple[dict[str, Any], ...]) -> tuple[str, dict[str, Any]]:
    """The configuration file of the ConfigMap the pods mount, as text and parsed."""
    pod = _one(objects, "StatefulSet")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    config_map = _one(objects, "ConfigMap", volume["configMap"]["name"])
    text = config_map["data"]["saynad.yaml"]
    return text, yaml.safe_load(text)


def _port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _expand(text: str, values: dict[str, str]) -> str:
    """``$(NAME)`` replaced as the kubelet does in an environment variable's value."""
    return re.sub(r"\$\((\w+)\)", lambda match: values[match.group(1)], text)


@pytest.mark.parametrize("tree", sorted(TREES))
@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_every_object_is_valid_for_kubernetes(tree: str, version: str) -> None:
    objects = _render(tree)
    kinds = {o["kind"] for o in objects}
    assert {"StatefulSet", "ConfigMap", "Service", "PodDisruptionBudget"} <= kinds
    for obj in objects:
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # a custom resource: test_the_pod_monitor_scrapes_every_shard
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_an_unknown_field() -> None:
    # strict=True is what makes the test above fail on a misspelt field.
    broken = yaml.safe_load(yaml.safe_dump(_one(_render("base"), "StatefulSet")))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnly"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST_KUBERNETES, strict=True)


def test_the_pod_monitor_scrapes_every_shard() -> None:
    objects = _render("overlay")
    monitor = _one(objects, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    template = _one(objects, "StatefulSet")["spec"]["template"]
    assert _matches(monitor["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    assert monitor["metadata"]["namespace"] == _one(objects, "StatefulSet")["metadata"]["namespace"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["path"] == "/metrics"
    _, config = _config(objects)
    assert _port(_container(objects), endpoint["port"]) == parse_listen(config["http"]["listen"])[1]
    # The base has no PodMonitor: a cluster without the operator has no such kind.
    assert not [o for o in _render("base") if o["kind"] == "PodMonitor"]


@pytest.mark.parametrize("tree", sorted(TREES))
def test_each_pod_runs_the_shard_of_its_index_out_of_the_replica_count(tree: str) -> None:
    objects = _render(tree)
    statefulset = _one(objects, "StatefulSet")
    replicas = statefulset["spec"]["replicas"]
    env = _env(_container(objects))
    names = [item["name"] for item in _container(objects)["env"]]
    # $(VAR) expands only variables defined earlier in the list.
    assert names.index("POD_INDEX") < names.index("SAYNAD_SHARD")
    assert names.index("SHARD_COUNT") < names.index("SAYNAD_SHARD")
    assert env["POD_INDEX"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["SHARD_COUNT"]["value"] == str(replicas)
    # The environment of pod I, expanded as the kubelet does.
    for index in range(replicas):
        values = {"POD_INDEX": str(index), "SHARD_COUNT": env["SHARD_COUNT"]["value"]}
        shard = _expand(env["SAYNAD_SHARD"]["value"], values)
        assert shard == f"{index}/{replicas}"
    # The file leaves the shard to the environment.
    _, config = _config(objects)
    assert "sharding" not in config


def test_the_overlay_sets_the_shard_count_in_one_place() -> None:
    overlay = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    (replicas,) = overlay["replicas"]
    assert _one(_render("overlay"), "StatefulSet")["spec"]["replicas"] == replicas["count"]
    assert _render("base") != _render("overlay")
    assert _one(_render("base"), "StatefulSet")["spec"]["replicas"] != replicas["count"]


@pytest.mark.parametrize("tree", sorted(TREES))
def test_the_grace_period_outlasts_prestop_drain_and_stop_grace(tree: str) -> None:
    objects = _render(tree)
    pod = _one(objects, "StatefulSet")["spec"]["template"]["spec"]
    pre_stop = _container(objects)["lifecycle"]["preStop"]["sleep"]["seconds"]
    _, config = _config(objects)
    drains = [config.get("defaults", {}).get("drain_timeout_s", Defaults().drain_timeout_s)]
    for section in ("templates", "sessions"):
        entries = config.get(section) or {}
        values = entries.values() if isinstance(entries, dict) else entries
        drains.extend(v["drain_timeout_s"] for v in values if "drain_timeout_s" in v)
    # saynad exits within drain + STOP_GRACE_S of SIGTERM, which comes after preStop.
    assert pod["terminationGracePeriodSeconds"] > pre_stop + max(drains) + STOP_GRACE_S


@pytest.mark.parametrize("tree", sorted(TREES))
def test_the_pod_is_locked_down(tree: str) -> None:
    objects = _render(tree)
    pod = _one(objects, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = _container(objects)["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    resources = _container(objects)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


@pytest.mark.parametrize("tree", sorted(TREES))
def test_services_and_budget_select_the_pods_on_their_ports(tree: str) -> None:
    objects = _render(tree)
    statefulset = _one(objects, "StatefulSet")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert _matches(statefulset["spec"]["selector"]["matchLabels"], labels)
    container = _container(objects)
    _, config = _config(objects)
    headless = _one(objects, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    webhooks = _one(objects, "Service", "saynad-webhooks")
    for service in (headless, webhooks):
        assert _matches(service["spec"]["selector"], labels)
        for port in service["spec"]["ports"]:
            _port(container, port["targetPort"])  # a named port of the container
    (webhook_port,) = webhooks["spec"]["ports"]
    assert (
        _port(container, webhook_port["targetPort"])
        == parse_listen(config["http"]["webhooks"]["listen"])[1]
    )
    assert _port(container, "http") == parse_listen(config["http"]["listen"])[1]
    budget = _one(objects, "PodDisruptionBudget")
    assert _matches(budget["spec"]["selector"]["matchLabels"], labels)
    assert budget["spec"]["maxUnavailable"] == 1
    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(_port(container, "http"))
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_credentials_are_mounted_where_the_configuration_reads_them() -> None:
    objects = _render("overlay")
    container = _container(objects)
    pod = _one(objects, "StatefulSet")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == _env(container)[CREDENTIALS_ENV]["value"]
    assert mount["readOnly"] is True
    # Readable by the pod's group (fsGroup), by nobody else.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # The overlay's instructions create every key the configuration reads.
    _, config = _config(objects)
    used = credential_names(config)
    created = set(
        re.findall(r"--from-file=([\w-]+)=", (OVERLAY / "kustomization.yaml").read_text())
    )
    assert used
    assert used == created
    # …and so do the operations guide's.
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert set(re.findall(r"--from-file=([\w-]+)=", docs)) == used
    assert volume["secret"]["secretName"] == "saynad-credentials"
    # The writable places are volumes: the root filesystem is read-only.
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/saynad", "/tmp"} <= mounted
    assert container["workingDir"] == "/var/lib/saynad"


def test_the_configmap_passes_saynad_check(tmp_path: Path) -> None:
    text, _ = _config(_render("overlay"))
    result = saynad_check(text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    # …and a credential the Secret lacks is what it would catch.
    missing = tmp_path / "missing"
    missing.mkdir()
    refused = saynad_check(text, missing, withhold="sayna-api-key")
    assert refused.returncode != 0
    assert "${credential:sayna-api-key}" in refused.stderr


async def test_the_probes_ask_real_routes_of_a_running_daemon(tmp_path: Path) -> None:
    container = _container(_render("base"))
    probes = {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # /healthz waits up to HEALTH_TIMEOUT_S for the supervisor: the probe waits longer.
    assert probes["livenessProbe"]["timeoutSeconds"] > HEALTH_TIMEOUT_S
    async with running_daemon(tmp_path, sessions=("lobby",)) as (daemon, client):
        await wait_until(
            lambda: (
                bool(states(daemon)) and all(s.value == "ready" for s in states(daemon).values())
            )
        )
        for kind, probe in probes.items():
            assert probe["httpGet"]["port"] == "http", kind
            response = await client.get(probe["httpGet"]["path"])
            assert response.status_code == 200, (kind, response.text)
        # A path the daemon does not serve would fail every probe.
        assert (await client.get("/health")).status_code == 404


def test_the_image_runs_as_the_user_the_pods_run_as() -> None:
    # The image is not built here (no container engine in the test suite): its recipe is
    # held to what the StatefulSet expects of it.
    dockerfile = (ROOT / "deploy" / "container" / "Dockerfile").read_text()
    pod = _one(_render("base"), "StatefulSet")["spec"]["template"]["spec"]
    user = pod["securityContext"]["runAsUser"]
    assert f"USER {user}:{pod['securityContext']['runAsGroup']}" in dockerfile.splitlines()
    assert "--require-hashes -r /tmp/saynad/run.txt" in dockerfile
    entrypoint = re.search(r"^ENTRYPOINT (.*)$", dockerfile, re.MULTILINE)
    assert entrypoint is not None
    command = [*json.loads(entrypoint.group(1)), *_container(_render("base"))["args"]]
    assert command == ["/opt/saynad/bin/saynad", "run", "--config", "/etc/saynad/saynad.yaml"]
    assert f"WORKDIR {_container(_render('base'))['workingDir']}" in dockerfile


async def _until_ok(client: httpx.AsyncClient, path: str) -> None:
    """Ask ``path`` until it answers 200, as a probe does until it succeeds."""
    with trio.fail_after(HANG_S):
        while (await client.get(path)).status_code != 200:  # noqa: ASYNC110 - another process
            await trio.sleep(0.1)


async def test_the_configmap_runs_as_the_last_pod_of_the_statefulset(tmp_path: Path) -> None:
    # The rendered configuration and environment of the last pod, run for real: the
    # shard that exists only at this replica count. The embedded
    # emulator stands in for Sayna, port 0 for the pod's fixed ports (both are free in a
    # pod's own network, not on a shared test machine), the sinks write under tmp_path.
    objects = _render("overlay")
    replicas = _one(objects, "StatefulSet")["spec"]["replicas"]
    container = _container(objects)
    env = _env(container)
    _, config = _config(objects)
    del config["sayna"]["url"]
    config["http"]["listen"] = "127.0.0.1:0"
    config["http"]["webhooks"]["listen"] = "127.0.0.1:0"
    for sink in config["templates"]["phone-agent"]["behaviours"]["transcripts"]:
        sink["path"] = str(tmp_path / "transcripts" / "{session}.jsonl")
    path = tmp_path / "saynad.yaml"
    path.write_text(yaml.safe_dump(config))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in credential_names(config):
        value = SECRET if name == "sip-webhook-secret" else f"{name}-value-0123456789"
        (credentials / name).write_text(value + "\n")
    index = replicas - 1
    values = {"POD_INDEX": str(index), "SHARD_COUNT": env["SHARD_COUNT"]["value"]}
    pod_env = {
        "SAYNAD_SHARD": _expand(env["SAYNAD_SHARD"]["value"], values),
        CREDENTIALS_ENV: str(credentials),
    }
    async with daemon_process(path, env=pod_env, stop_s=HANG_S) as daemon:
        hook = await daemon.event("webhook listener listening")
        async with httpx.AsyncClient(base_url=daemon.url, timeout=HANG_S) as client:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                await _until_ok(client, container[probe]["httpGet"]["path"])
            listed = (await client.get("/sessions")).json()
            mine = {
                name
                for name, shard in sharding.assign(
                    [s["name"] for s in config["sessions"]], replicas
                ).items()
                if shard == index
            }
            assert mine, "the example fleet leaves the last pod without always-on sessions"
            assert {row["name"] for row in listed["sessions"]} == mine
            headers, body = signed_call("sip-last-pod", "EV_last_pod")
            answer = await client.post(
                str(hook["url"]) + config["inbound"]["sip_webhook"]["path"],
                headers=headers,
                content=body,
            )
            assert answer.status_code == 202, answer.text
        daemon.process.send_signal(signal.SIGTERM)
        with trio.fail_after(HANG_S):
            assert await daemon.process.wait() == 0
