#!/usr/bin/env python3
"""Chart tests for charts/hami-webui-server, with Helm's own library (helm-python-sdk, Helm v4).

Lints the chart, renders it offline with the default values and with a values file in the
HAMi-WebUI 2.0 chart's shape, and checks the rendered objects: the web entry (port 3000, its
Service, base path, frame ancestors) and the backend-only mode (web.enabled false), probes and
their paths, RBAC verbs, security context, the embedded config.yaml (keys, values, no secret
material), Secrets mounted as files at the paths config.yaml names, and that values.schema.json
describes every key of values.yaml (and nothing else). Invalid values must be refused. With a
built server binary, it starts the rendered container (its arguments, environment and config)
and probes every rendered probe on the port it names. The monitoring objects (issue 22): the
PrometheusRule and dashboard ConfigMaps appear only when enabled, take their thresholds from
values, lint clean, and the generated mixin files (mixin/generate.py) are current.

Run: python3 tests/chart/test_chart.py   (needs: pip install helm-python-sdk pyyaml ruamel.yaml)
The last line is "N passed, N failed"; the exit status is 1 when anything failed.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hami-webui-server"
UPSTREAM_VALUES = Path(__file__).resolve().parent / "values-hami-webui-2.0.yaml"
SERVER_CONFIG = ROOT / "config" / "config.yaml"
RELEASE = "hami-webui"
NAMESPACE = "hami-system"
SECRETS_DIR = "/apps/secrets/"

PASSED: list[str] = []
FAILED: list[str] = []


def check(name: str):
    """Runs the decorated function now as one named check."""

    def run(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            FAILED.append(name)
            print(f"FAIL {name}: {detail}")
        else:
            PASSED.append(name)
            print(f"ok   {name}")
        return fn

    return run


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def expect_eq(actual, expected, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


# ------------------------------------------------------------------------------------------
# Rendering helpers


def render(values: dict | None = None) -> dict[tuple[str, str], dict]:
    """Renders the chart; returns {(kind, name): object}."""
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: dict[tuple[str, str], dict] = {}
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            expect(key not in objects, f"duplicate object {key}")
            objects[key] = doc
    return objects


def render_fails(values: dict) -> str:
    """Renders and expects Helm to refuse; returns the error text."""
    try:
        render(values)
    except helm.HelmError as exc:
        return str(exc)
    raise AssertionError(f"rendering accepted invalid values {values!r}")


def named(objects: dict, kind: str, suffix: str) -> dict:
    """The one object of `kind` whose name ends with `suffix` (after the fullname)."""
    found = [o for (k, name), o in objects.items() if k == kind and name.endswith(suffix)]
    expect_eq(len(found), 1, f"{kind} objects named *{suffix}")
    return found[0]


def one(objects: dict, kind: str) -> dict:
    found = [o for (k, _), o in objects.items() if k == kind]
    expect_eq(len(found), 1, f"number of {kind} objects")
    return found[0]


def kinds(objects: dict) -> set[str]:
    return {k for (k, _) in objects}


def container(objects: dict) -> dict:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    expect_eq(len(containers), 1, "containers in the pod")
    return containers[0]


def services(objects: dict) -> dict[str, dict]:
    """Service name -> Service."""
    return {name: o for (k, name), o in objects.items() if k == "Service"}


def env_of(objects: dict) -> dict[str, str]:
    return {v["name"]: v.get("value") for v in container(objects).get("env", [])}


def probes_of(objects: dict) -> dict[str, tuple[str, str]]:
    """probe -> (path, port name) of every rendered probe."""
    c = container(objects)
    return {probe: (c[probe]["httpGet"]["path"], c[probe]["httpGet"]["port"])
            for probe in ("startupProbe", "readinessProbe", "livenessProbe") if probe in c}


WEB_PROBES = {"startupProbe": ("/readyz", "metrics"), "readinessProbe": ("/health_check", "http"),
              "livenessProbe": ("/health_check", "http")}
BACKEND_ONLY_PROBES = {"startupProbe": ("/readyz", "metrics"), "readinessProbe": ("/readyz", "metrics"),
                       "livenessProbe": ("/livez", "metrics")}
FULLNAME = f"{RELEASE}-hami-webui-server"


def config_text(objects: dict) -> str:
    return one(objects, "ConfigMap")["data"]["config.yaml"]


def config_of(objects: dict) -> dict:
    return yaml.safe_load(config_text(objects))


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def key_paths(node, prefix: str = "") -> set[str]:
    """Dotted paths of every key of a mapping tree (lists are leaves)."""
    paths: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.add(path)
            paths |= key_paths(value, path)
    return paths


# Keys of the server's config format: those of config/config.yaml plus the optional ones it
# documents in comments (credential files, TLS, time zone).
SERVER_KEYS = key_paths(yaml.safe_load(SERVER_CONFIG.read_text())) | {
    "server.timezone",
    "server.http.workers",
    "prometheus.authorization",
    "prometheus.authorization.type",
    "prometheus.authorization.credentials_file",
    "prometheus.basic_auth",
    "prometheus.basic_auth.username_file",
    "prometheus.basic_auth.password_file",
    "prometheus.tls",
    "prometheus.tls.ca_file",
    "prometheus.tls.cert_file",
    "prometheus.tls.key_file",
    "prometheus.tls.server_name",
    "prometheus.tls.insecure_skip_verify",
    "node_selectors.HCU",
    "node_selectors.AMD",
    "leader_election.namespace",
    "leader_election.identity",
}


def mounted_files(objects: dict) -> dict[str, tuple[str, str]]:
    """File path in the container -> (Secret name, key), for every Secret volume mounted."""
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files: dict[str, tuple[str, str]] = {}
    for mount in container(objects).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" not in volume:
            continue
        expect(mount.get("readOnly") is True, f"secret mount {mount['name']} is read-only")
        base = mount["mountPath"].rstrip("/")
        for item in volume["secret"].get("items", []):
            files[f"{base}/{item['path']}"] = (volume["secret"]["secretName"], item["key"])
    return files


def file_settings(config: dict, prefix: str = "") -> dict[str, str]:
    """Every `*_file` setting of the config: dotted key -> path."""
    out: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out |= file_settings(value, path)
        elif key.endswith("_file"):
            out[path] = value
    return out


def check_no_secret_material(objects: dict) -> None:
    text = config_text(objects)
    config = config_of(objects)
    expect("BEGIN " not in text, "no PEM block in the ConfigMap")
    prometheus = config["prometheus"]
    expect("auth" not in prometheus, "no inline prometheus.auth header")
    for section in ("authorization", "basic_auth"):
        for key in prometheus.get(section, {}):
            expect(
                key.endswith("_file") or key == "type",
                f"prometheus.{section}.{key} is a file reference, not a credential",
            )
    for key, path in file_settings(config).items():
        expect(path.startswith(SECRETS_DIR), f"{key} points under {SECRETS_DIR}: {path}")
    expect("Secret" not in kinds(objects), "the chart creates no Secret")
    for (kind, _), obj in objects.items():
        if kind == "Deployment":
            for var in container(objects).get("env", []):
                source = var.get("valueFrom", {})
                expect(set(source) <= {"fieldRef"}, f"no Secret in the environment ({var['name']})")


def check_files_are_mounted(objects: dict) -> dict[str, tuple[str, str]]:
    mounted = mounted_files(objects)
    for key, path in file_settings(config_of(objects)).items():
        expect(path in mounted, f"{key} = {path} is a mounted Secret item (have {sorted(mounted)})")
    return mounted


# ------------------------------------------------------------------------------------------
# Lint

for label, values in (("default values", None), ("HAMi-WebUI 2.0 values", "upstream")):

    @check(f"helm lint --strict with {label}")
    def _lint(values=values):
        vals = yaml.safe_load(UPSTREAM_VALUES.read_text()) if values else None
        report = helm.lint(str(CHART), vals, strict=True, namespace=NAMESPACE)
        expect_eq(report["total_charts_linted"], 1, "charts linted")
        expect_eq(report["errors"], [], "lint errors")
        bad = [m for m in report["messages"] if m["severity"] >= 2]
        expect_eq(bad, [], "lint warnings and errors")


# ------------------------------------------------------------------------------------------
# Default values

DEFAULT = render()


@check("default: the expected objects, nothing optional")
def _default_kinds():
    expect_eq(
        kinds(DEFAULT),
        {"ConfigMap", "Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
         "Role", "RoleBinding", "PodDisruptionBudget"},
        "kinds",
    )


@check("default: image entrypoint and arguments")
def _default_command():
    c = container(DEFAULT)
    expect_eq(c["image"], "hami-webui-server:0.1.0", "image (tag defaults to appVersion)")
    expect_eq(c["command"], ["/apps/hami-webui"], "command")
    expect_eq(c["args"], ["--conf", "/apps/config/config.yaml", "--log-format", "text"],
              "args (no --frame-ancestors-json while frontend.frameAncestors is null)")
    expect_eq(c["ports"], [{"name": "metrics", "containerPort": 8000, "protocol": "TCP"},
                           {"name": "http", "containerPort": 3000, "protocol": "TCP"}], "ports")


@check("default: the web entry is on, at the root")
def _default_web():
    env = env_of(DEFAULT)
    expect_eq(env.get("HAMI_WEBUI_BASE_PATH"), "/", "HAMI_WEBUI_BASE_PATH")
    expect("HAMI_WEBUI__WEB__ENABLED" not in env, "the public listener is not turned off")
    expect_eq(env.get("RUST_LOG"), "info", "RUST_LOG")


@check("default: 2.0's probe layout (startup /readyz on 8000, readiness and liveness /health_check "
       "on 3000) and a generous startup budget")
def _default_probes():
    c = container(DEFAULT)
    expect_eq(probes_of(DEFAULT), WEB_PROBES, "probes (path, port name)")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    expect_eq((ports["metrics"], ports["http"]), (8000, 3000), "probe port numbers")
    startup = c["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    expect(budget >= 300, f"startup budget {budget}s covers a large cluster's first list")


@check("default: public Service `http` on 3000 (service.type), internal `backend-http` on 8000 (ClusterIP)")
def _default_services():
    svcs = services(DEFAULT)
    expect_eq(set(svcs), {FULLNAME, f"{FULLNAME}-backend"}, "Service names")
    public, internal = svcs[FULLNAME], svcs[f"{FULLNAME}-backend"]
    expect_eq(public["spec"]["type"], "ClusterIP", "public type")
    expect_eq(public["spec"]["ports"], [{"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}],
              "public ports")
    expect_eq(internal["spec"]["type"], "ClusterIP", "internal type")
    expect_eq(internal["spec"]["ports"],
              [{"name": "backend-http", "port": 8000, "targetPort": "metrics", "protocol": "TCP"}], "internal ports")
    pod_labels = one(DEFAULT, "Deployment")["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in container(DEFAULT)["ports"]}
    for name, svc in svcs.items():
        expect(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), f"{name} selects the pods")
        for port in svc["spec"]["ports"]:
            expect(port["targetPort"] in port_names, f"{name} targets a container port: {port['targetPort']}")


@check("web.enabled false: HAMI_WEBUI__WEB__ENABLED=false, no port 3000, no public Service, probes on 8000")
def _backend_only():
    objects = render({"web": {"enabled": False}, "frontend": {"basePath": "/gpu/", "frameAncestors": ["'self'"]}})
    c = container(objects)
    env = env_of(objects)
    expect_eq(env.get("HAMI_WEBUI__WEB__ENABLED"), "false", "HAMI_WEBUI__WEB__ENABLED")
    expect("HAMI_WEBUI_BASE_PATH" not in env, "no base path without the public listener")
    expect(not any(a.startswith("--frame-ancestors-json") for a in c["args"]), "no frame ancestors")
    expect_eq(c["ports"], [{"name": "metrics", "containerPort": 8000, "protocol": "TCP"}], "ports")
    expect_eq(probes_of(objects), BACKEND_ONLY_PROBES, "probes (path, port name)")
    expect_eq(set(services(objects)), {f"{FULLNAME}-backend"}, "only the internal Service")
    expect_eq(kinds(objects), kinds(DEFAULT), "otherwise the same objects")
    expect_eq(config_of(objects), config_of(DEFAULT), "the same config.yaml")


@check("service.type applies to the public Service only; port 8000 stays ClusterIP")
def _service_type():
    svcs = services(render({"service": {"type": "LoadBalancer", "port": 80}}))
    expect_eq((svcs[FULLNAME]["spec"]["type"], svcs[FULLNAME]["spec"]["ports"][0]["port"]), ("LoadBalancer", 80),
              "public Service")
    expect_eq(svcs[f"{FULLNAME}-backend"]["spec"]["type"], "ClusterIP", "internal Service")
    long = services(render({"fullnameOverride": "x" * 63}))
    expect(all(len(name) <= 63 for name in long), f"Service names within 63 characters: {sorted(long)}")
    expect_eq(len(long), 2, "two distinct Service names with a 63-character fullname")


@check("frontend.basePath: canonical form in HAMI_WEBUI_BASE_PATH")
def _base_path():
    for given, expected in (("/", "/"), ("", "/"), ("gpu", "/gpu/"), ("/gpu", "/gpu/"), ("/gpu/", "/gpu/"),
                            ("/a/b.c~d-e_f/", "/a/b.c~d-e_f/")):
        env = env_of(render({"frontend": {"basePath": given}}))
        expect_eq(env.get("HAMI_WEBUI_BASE_PATH"), expected, f"basePath {given!r}")


@check("frontend.frameAncestors: null omits the flag; [] and lists pass as JSON")
def _frame_ancestors():
    def flags(value):
        args = container(render({"frontend": {"frameAncestors": value}}))["args"]
        return [a for a in args if a.startswith("--frame-ancestors-json")]
    expect_eq(flags(None), [], "null")
    expect_eq(flags([]), ["--frame-ancestors-json=[]"], "[]")
    sources = ["'self'", "https://portal.example.com", "http://10.0.0.5:8080"]
    expect_eq(flags(sources), ["--frame-ancestors-json=" + json.dumps(sources, separators=(",", ":"))], "list")


@check("default: pod and container security context")
def _default_security():
    pod = one(DEFAULT, "Deployment")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    expect_eq(psc.get("runAsNonRoot"), True, "pod runAsNonRoot")
    expect_eq(psc.get("runAsUser"), 65532, "pod runAsUser")
    expect_eq(psc.get("seccompProfile"), {"type": "RuntimeDefault"}, "pod seccompProfile")
    sc = container(DEFAULT)["securityContext"]
    expect_eq(sc.get("readOnlyRootFilesystem"), True, "readOnlyRootFilesystem")
    expect_eq(sc.get("allowPrivilegeEscalation"), False, "allowPrivilegeEscalation")
    expect_eq(sc.get("runAsNonRoot"), True, "container runAsNonRoot")
    expect_eq(sc.get("runAsUser"), 65532, "container runAsUser")
    expect_eq(sc.get("capabilities"), {"drop": ["ALL"]}, "capabilities")


@check("default: grace period 30 s above shutdown_timeout 25 s")
def _default_shutdown():
    pod = one(DEFAULT, "Deployment")["spec"]["template"]["spec"]
    expect_eq(pod["terminationGracePeriodSeconds"], 30, "terminationGracePeriodSeconds")
    expect_eq(config_of(DEFAULT)["server"]["shutdown_timeout"], "25s", "server.shutdown_timeout")


@check("default: RBAC is get/list/watch on nodes, pods and DRA slices and claims, list on events, nothing else")
def _default_rbac():
    role = one(DEFAULT, "ClusterRole")
    granted = set()
    for rule in role["rules"]:
        expect(set(rule) <= {"apiGroups", "resources", "verbs"}, f"plain rule {rule}")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    expected = {("", r, v) for r in ("nodes", "pods") for v in ("get", "list", "watch")}
    expected |= {("resource.k8s.io", r, v) for r in ("resourceslices", "resourceclaims")
                 for v in ("get", "list", "watch")}
    # GET /v1/scheduling/pod lists one pod's events (field selector involvedObject.uid).
    expected.add(("", "events", "list"))
    expect_eq(granted, expected, "granted (group, resource, verb)")
    binding = one(DEFAULT, "ClusterRoleBinding")
    expect_eq(binding["roleRef"]["name"], role["metadata"]["name"], "binding roleRef")
    sa = one(DEFAULT, "ServiceAccount")
    subject = binding["subjects"][0]
    expect_eq((subject["kind"], subject["name"], subject["namespace"]),
              ("ServiceAccount", sa["metadata"]["name"], NAMESPACE), "binding subject")
    pod = one(DEFAULT, "Deployment")["spec"]["template"]["spec"]
    expect_eq(pod["serviceAccountName"], sa["metadata"]["name"], "pod service account")


def check_device_config_role(objects: dict, namespace: str, name: str) -> None:
    """A Role in HAMi's namespace grants get/list/watch on exactly one ConfigMap, bound to us."""
    role = named(objects, "Role", "-device-config")
    expect_eq(role["metadata"]["namespace"], namespace, "Role namespace")
    expect_eq(len(role["rules"]), 1, "Role rules")
    rule = role["rules"][0]
    expect_eq(rule.get("apiGroups"), [""], "apiGroups")
    expect_eq(rule.get("resources"), ["configmaps"], "resources")
    expect_eq(rule.get("resourceNames"), [name], "resourceNames (exactly one ConfigMap)")
    expect_eq(sorted(rule.get("verbs", [])), ["get", "list", "watch"], "verbs")
    binding = named(objects, "RoleBinding", "-device-config")
    expect_eq(binding["metadata"]["namespace"], namespace, "RoleBinding namespace")
    expect_eq((binding["roleRef"]["kind"], binding["roleRef"]["name"]),
              ("Role", role["metadata"]["name"]), "RoleBinding roleRef")
    sa = one(objects, "ServiceAccount")
    expect_eq([(s["kind"], s["name"], s["namespace"]) for s in binding["subjects"]],
              [("ServiceAccount", sa["metadata"]["name"], NAMESPACE)], "RoleBinding subjects")
    config = config_of(objects)["device_config"]
    expect_eq((config["namespace"], config["name"]), (namespace, name), "the Role names what is read")


@check("default: a Role in kube-system reads only the one device ConfigMap")
def _default_device_config_role():
    check_device_config_role(DEFAULT, "kube-system", "hami-scheduler-device")


@check("hami.deviceConfig off: no device-config Role; rbac.create off: no Role at all")
def _device_config_role_off():
    objects = render({"hami": {"deviceConfig": {"enabled": False}}})
    names = {name for (kind, name) in objects if kind in ("Role", "RoleBinding")}
    expect_eq(names, {f"{FULLNAME}-leader-election"}, "Roles and RoleBindings left")
    objects = render({"rbac": {"create": False}})
    expect(not kinds(objects) & {"Role", "RoleBinding"}, "no Role with rbac.create false")


@check("default: ConfigMap mounted read-only at /apps/config/")
def _default_config_mount():
    pod = one(DEFAULT, "Deployment")["spec"]["template"]["spec"]
    cm = one(DEFAULT, "ConfigMap")["metadata"]["name"]
    volume = next(v for v in pod["volumes"] if v.get("configMap", {}).get("name") == cm)
    mount = next(m for m in container(DEFAULT)["volumeMounts"] if m["name"] == volume["name"])
    expect_eq(mount["mountPath"].rstrip("/"), "/apps/config", "config mount path")
    expect_eq(mount.get("readOnly"), True, "config mount readOnly")
    expect("checksum/config" in one(DEFAULT, "Deployment")["spec"]["template"]["metadata"]["annotations"],
           "pods roll on config change")


@check("default: config.yaml has the server's defaults and only keys the server knows")
def _default_config():
    config = config_of(DEFAULT)
    unknown = key_paths(config) - SERVER_KEYS
    expect_eq(unknown, set(), "keys unknown to the server's config format")
    expected = {
        "server": {
            "http": {"addr": "0.0.0.0:8000", "timeout": "60s", "client_request_timeout": "5s",
                     "keep_alive": "75s", "max_connections": 10000, "body_timeout": "10s"},
            "shutdown_timeout": "25s",
        },
        "prometheus": {
            "address": "http://localhost:9090", "timeout": "1m", "max_concurrency": 8,
            "max_queue": 256, "max_response_bytes": 67108864, "path_prefix": "",
            "tls": {"insecure_skip_verify": False},
        },
        "exporter": {"interval": "30s", "timeout": "60s", "stale_cycles": 3, "window_refresh": "30s"},
        "node_selectors": {"NVIDIA": "gpu=on", "Ascend": "ascend=on", "DCU": "dcu=on", "HCU": "hcu=on",
                           "MLU": "mlu=on", "Metax": "metax-tech.com/gpu.installed=true"},
        "scheduling": {"resource_names": []},
        "device_config": {"enabled": True, "namespace": "kube-system", "name": "hami-scheduler-device",
                          "key": "device-config.yaml"},
        "ascend": {"annotationless_pod_mode": "unknown"},
        "kubernetes": {"unready_after": "5m"},
        "monitor": {"allowed_metric_prefixes": ["hami_", "kube_"], "max_query_length": 16384},
        "leader_election": {"enabled": True, "lease_name": FULLNAME, "namespace": NAMESPACE,
                            "lease_duration": "15s", "renew_deadline": "10s", "retry_period": "2s"},
    }
    expect_eq(config, expected, "config.yaml")


@check("default: defaults agree with config/config.yaml")
def _default_matches_server_file():
    server = yaml.safe_load(SERVER_CONFIG.read_text())
    config = config_of(DEFAULT)
    for section, key in [("server", "shutdown_timeout"), ("exporter", "interval"),
                         ("exporter", "timeout"), ("exporter", "stale_cycles"),
                         ("exporter", "window_refresh"),
                         ("prometheus", "max_concurrency"), ("prometheus", "max_queue"),
                         ("prometheus", "max_response_bytes"), ("kubernetes", "unready_after")]:
        expect_eq(config[section][key], server[section][key], f"{section}.{key}")
    for key in ("timeout", "client_request_timeout", "keep_alive", "max_connections", "addr"):
        expect_eq(config["server"]["http"][key], server["server"]["http"][key], f"server.http.{key}")
    expect_eq(config["device_config"], server["device_config"], "device_config")


@check("default: no secret material, no Secret mounts")
def _default_no_secrets():
    check_no_secret_material(DEFAULT)
    expect_eq(mounted_files(DEFAULT), {}, "secret files")


# ------------------------------------------------------------------------------------------
# A values file in the HAMi-WebUI 2.0 chart's shape

UPSTREAM = yaml.safe_load(UPSTREAM_VALUES.read_text())
RENDERED_UPSTREAM = render(UPSTREAM)


@check("2.0 values: every backend key lands in config.yaml")
def _upstream_config():
    config = config_of(RENDERED_UPSTREAM)
    expect_eq(key_paths(config) - SERVER_KEYS, set(), "keys unknown to the server's config format")
    prom = config["prometheus"]
    expect_eq(prom["address"], "https://vmselect.monitoring.svc:8481", "prometheus.address")
    expect_eq(prom["timeout"], "45s", "prometheus.timeout")
    expect_eq(prom["authorization"], {"type": "Bearer",
                                      "credentials_file": "/apps/secrets/authorization/credentials"},
              "prometheus.authorization")
    expect("basic_auth" not in prom, "no basic_auth")
    expect_eq(prom["tls"], {"insecure_skip_verify": False, "server_name": "vmselect.monitoring.svc",
                            "ca_file": "/apps/secrets/tls/ca.crt",
                            "cert_file": "/apps/secrets/tls/tls.crt",
                            "key_file": "/apps/secrets/tls/tls.key"}, "prometheus.tls")
    expect_eq(config["server"]["http"]["timeout"], "90s", "backend.http.timeout")
    expect_eq(config["exporter"]["interval"], "1m", "metricsExporter.interval")
    expect_eq(config["exporter"]["timeout"], "50s", "metricsExporter.timeout")
    expect_eq(config["node_selectors"], UPSTREAM["vendorNodeSelectors"], "vendorNodeSelectors")
    expect_eq(config["scheduling"]["resource_names"], UPSTREAM["scheduling"]["resourceNames"],
              "scheduling.resourceNames")
    expect_eq(config["device_config"], {"enabled": True, "namespace": "hami-system",
                                        "name": "hami-scheduler-device", "key": "device-config.yaml"},
              "hami.deviceConfig")
    expect_eq(config["ascend"]["annotationless_pod_mode"], "template", "ascend.annotationlessPodMode")
    check_device_config_role(RENDERED_UPSTREAM, "hami-system", "hami-scheduler-device")


@check("2.0 values: credentials mounted from their Secrets at the paths config.yaml names")
def _upstream_secrets():
    check_no_secret_material(RENDERED_UPSTREAM)
    mounted = check_files_are_mounted(RENDERED_UPSTREAM)
    expect_eq(mounted, {
        "/apps/secrets/authorization/credentials": ("prometheus-token", "token"),
        "/apps/secrets/tls/ca.crt": ("prometheus-tls", "ca.crt"),
        "/apps/secrets/tls/tls.crt": ("prometheus-tls", "client.crt"),
        "/apps/secrets/tls/tls.key": ("prometheus-tls", "client.key"),
    }, "mounted secret files")


@check("2.0 values: image, pod and scheduling keys")
def _upstream_pod():
    deployment = one(RENDERED_UPSTREAM, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(RENDERED_UPSTREAM)
    expect_eq(deployment["metadata"]["name"], "hami-webui", "fullnameOverride")
    expect_eq(deployment["spec"]["replicas"], 2, "replicaCount")
    expect_eq(c["image"], "registry.example.com/hami/hami-webui-server@" + UPSTREAM["image"]["digest"],
              "image (digest wins)")
    expect_eq(c["imagePullPolicy"], "Always", "image.pullPolicy")
    expect_eq(pod["imagePullSecrets"], [{"name": "registry-credentials"}], "imagePullSecrets")
    expect({"name": "TZ", "value": "Europe/Berlin"} in c["env"], "env passed through")
    expect_eq(c["resources"], UPSTREAM["resources"], "resources")
    expect_eq(pod["tolerations"], UPSTREAM["tolerations"], "tolerations")
    expect_eq(pod["nodeSelector"], UPSTREAM["nodeSelector"], "nodeSelector")
    expect_eq(deployment["spec"]["template"]["metadata"]["annotations"]["example.com/team"],
              "gpu-platform", "podAnnotations")
    startup = c["startupProbe"]
    expect_eq((startup["httpGet"]["path"], startup["periodSeconds"], startup["failureThreshold"]),
              ("/readyz", 10, 90), "probes.startup")
    expect_eq(probes_of(RENDERED_UPSTREAM), WEB_PROBES, "2.0's probe layout")


@check("2.0 values: frontend.basePath and service.port reach the web entry")
def _upstream_web():
    expect_eq(env_of(RENDERED_UPSTREAM).get("HAMI_WEBUI_BASE_PATH"), "/gpu/", "HAMI_WEBUI_BASE_PATH")
    c = container(RENDERED_UPSTREAM)
    expect(not any(a.startswith("--frame-ancestors-json") for a in c["args"]), "frameAncestors null: no flag")
    public = services(RENDERED_UPSTREAM)["hami-webui"]
    expect_eq((public["spec"]["ports"][0]["name"], public["spec"]["ports"][0]["port"],
               public["spec"]["ports"][0]["targetPort"]), ("http", 3000, "http"), "public Service port")


@check("2.0 values: `securityContext: {}` keeps the hardened defaults")
def _upstream_security():
    pod = one(RENDERED_UPSTREAM, "Deployment")["spec"]["template"]["spec"]
    expect_eq(pod["securityContext"]["runAsUser"], 65532, "pod runAsUser")
    sc = container(RENDERED_UPSTREAM)["securityContext"]
    expect_eq(sc["readOnlyRootFilesystem"], True, "readOnlyRootFilesystem")
    expect_eq(sc["capabilities"], {"drop": ["ALL"]}, "capabilities")


@check("2.0 values: ServiceMonitor scrapes /metrics through the internal Service only, to port 8000")
def _upstream_service_monitor():
    monitor = one(RENDERED_UPSTREAM, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in services(RENDERED_UPSTREAM).values()
                if all(s["metadata"]["labels"].get(k) == v for k, v in selector.items())]
    expect_eq([s["metadata"]["name"] for s in selected], ["hami-webui-backend"], "Services selected")
    service = selected[0]
    expect_eq(service["metadata"]["labels"].get(monitor["spec"]["jobLabel"]), "hami-webui",
              "Prometheus job = the release's fullname")
    endpoint = monitor["spec"]["endpoints"][0]
    expect_eq((endpoint["port"], endpoint["path"], endpoint["interval"]),
              ("backend-http", "/metrics", "30s"), "endpoint")
    expect_eq(monitor["metadata"]["labels"].get("jobRelease"), "hami-webui-prometheus",
              "additionalLabels")
    selector = monitor["spec"]["selector"]["matchLabels"]
    labels = service["metadata"]["labels"]
    expect(all(labels.get(k) == v for k, v in selector.items()), "selector matches the Service")
    expect_eq(monitor["spec"]["namespaceSelector"]["matchNames"], [NAMESPACE], "namespaceSelector")
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    expect_eq(port["targetPort"], "metrics", "Service targetPort")
    expect_eq(container(RENDERED_UPSTREAM)["ports"][0]["containerPort"], 8000, "containerPort")
    pod_labels = one(RENDERED_UPSTREAM, "Deployment")["spec"]["template"]["metadata"]["labels"]
    expect(all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items()),
           "Service selects the pods")


@check("basic auth: username and password files from the Secret")
def _basic_auth():
    values = deep_merge(UPSTREAM, {"externalPrometheus": {
        "authorization": {"existingSecret": "", "credentialsKey": ""},
        "basicAuth": {"existingSecret": "vm-basic", "usernameKey": "user", "passwordKey": "pass"},
        "tls": {"existingSecret": "", "caKey": "", "certKey": "", "keyKey": ""},
    }})
    objects = render(values)
    prom = config_of(objects)["prometheus"]
    expect_eq(prom["basic_auth"], {"username_file": "/apps/secrets/basic-auth/username",
                                   "password_file": "/apps/secrets/basic-auth/password"}, "basic_auth")
    expect("authorization" not in prom, "no authorization")
    expect_eq(set(prom["tls"]), {"insecure_skip_verify", "server_name"}, "tls without files")
    check_no_secret_material(objects)
    expect_eq(check_files_are_mounted(objects), {
        "/apps/secrets/basic-auth/username": ("vm-basic", "user"),
        "/apps/secrets/basic-auth/password": ("vm-basic", "pass"),
    }, "mounted secret files")


@check("our keys: limits, workers, stale cycles, window refresh, time zone, shutdown, unready_after, logging")
def _our_keys():
    objects = render({
        "externalPrometheus": {"maxConcurrency": 3, "maxQueue": 10, "maxResponseBytes": 1048576,
                               "pathPrefix": "/select/0/prometheus"},
        "metricsExporter": {"staleCycles": 0, "windowRefresh": "0s"},
        "backend": {"timezone": "Asia/Shanghai", "shutdownTimeout": "10s", "logFormat": "json",
                    "logLevel": "debug", "kubernetes": {"unreadyAfter": "2m"},
                    "http": {"maxConnections": 500, "workers": 4, "scrapeSendBuffer": 0}},
        "terminationGracePeriodSeconds": 15,
    })
    config = config_of(objects)
    prom = config["prometheus"]
    expect_eq((prom["max_concurrency"], prom["max_queue"], prom["max_response_bytes"], prom["path_prefix"]),
              (3, 10, 1048576, "/select/0/prometheus"), "prometheus limits")
    expect_eq(config["exporter"]["stale_cycles"], 0, "exporter.stale_cycles")
    expect_eq(config["exporter"]["window_refresh"], "0s", "exporter.window_refresh")
    expect_eq(config["server"]["http"]["workers"], 4, "server.http.workers")
    expect_eq(config["server"]["http"]["scrape_send_buffer"], 0, "server.http.scrape_send_buffer")
    expect("server.http.workers" in SERVER_KEYS, "server.http.workers is a server key")
    expect_eq(config["server"]["timezone"], "Asia/Shanghai", "server.timezone")
    expect_eq(config["server"]["shutdown_timeout"], "10s", "server.shutdown_timeout")
    expect_eq(config["server"]["http"]["max_connections"], 500, "server.http.max_connections")
    expect_eq(config["kubernetes"]["unready_after"], "2m", "kubernetes.unready_after")
    c = container(objects)
    expect_eq(c["args"][2:4], ["--log-format", "json"], "--log-format")
    expect({"name": "RUST_LOG", "value": "debug"} in c["env"], "RUST_LOG")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    expect_eq(pod["terminationGracePeriodSeconds"], 15, "terminationGracePeriodSeconds")


@check("default: 2 replicas, leader election on, POD_NAME/POD_NAMESPACE from the downward API")
def _default_high_availability():
    deployment = one(DEFAULT, "Deployment")
    expect_eq(deployment["spec"]["replicas"], 2, "replicas")
    env = {v["name"]: v for v in container(DEFAULT)["env"]}
    expect_eq(env["POD_NAME"].get("valueFrom"), {"fieldRef": {"fieldPath": "metadata.name"}}, "POD_NAME")
    expect_eq(env["POD_NAMESPACE"].get("valueFrom"), {"fieldRef": {"fieldPath": "metadata.namespace"}},
              "POD_NAMESPACE")
    expect_eq(config_of(DEFAULT)["leader_election"]["enabled"], True, "leader_election.enabled")


@check("default: replicas spread across nodes, selecting this release's pods")
def _default_spread():
    deployment = one(DEFAULT, "Deployment")
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    expect_eq(constraints, [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
    }], "topologySpreadConstraints")
    own = render({"topologySpreadConstraints": [{
        "maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"team": "gpu"}}}]})
    expect_eq(one(own, "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"],
              {"matchLabels": {"team": "gpu"}}, "a given labelSelector is kept")
    single = one(render({"replicaCount": 1}), "Deployment")["spec"]["template"]["spec"]
    expect("topologySpreadConstraints" not in single, "no spread for one replica")


@check("default: a Role in the release namespace for its one Lease (create; get and update by name)")
def _default_lease_role():
    role = named(DEFAULT, "Role", "-leader-election")
    expect_eq(role["metadata"]["namespace"], NAMESPACE, "Role namespace")
    granted = set()
    for rule in role["rules"]:
        expect_eq((rule.get("apiGroups"), rule.get("resources")), (["coordination.k8s.io"], ["leases"]),
                  "only leases")
        for verb in rule["verbs"]:
            granted.add((verb, tuple(rule.get("resourceNames", []))))
    expect_eq(granted, {("create", ()), ("get", (FULLNAME,)), ("update", (FULLNAME,))}, "verbs")
    binding = named(DEFAULT, "RoleBinding", "-leader-election")
    expect_eq(binding["metadata"]["namespace"], NAMESPACE, "RoleBinding namespace")
    expect_eq(binding["roleRef"]["name"], role["metadata"]["name"], "RoleBinding roleRef")
    sa = one(DEFAULT, "ServiceAccount")
    expect_eq([(x["kind"], x["name"], x["namespace"]) for x in binding["subjects"]],
              [("ServiceAccount", sa["metadata"]["name"], NAMESPACE)], "RoleBinding subjects")
    named_lease = render({"leaderElection": {"leaseName": "webui-leader"}})
    rules = named(named_lease, "Role", "-leader-election")["rules"]
    expect_eq([r.get("resourceNames") for r in rules], [None, ["webui-leader"]], "leaseName in the Role")
    expect_eq(config_of(named_lease)["leader_election"]["lease_name"], "webui-leader", "leaseName in config")


@check("leaderElection off: one replica, no Lease Role, leader_election.enabled false; several replicas refused")
def _leader_election_off():
    objects = render({"replicaCount": 1, "leaderElection": {"enabled": False}})
    expect(("Role", f"{FULLNAME}-leader-election") not in objects, "no Lease Role")
    expect_eq(config_of(objects)["leader_election"]["enabled"], False, "leader_election.enabled")
    error = render_fails({"leaderElection": {"enabled": False}})
    expect("needs leaderElection.enabled" in error, f"refusal names the fix: {error}")


@check("leaderElection durations are validated by the schema")
def _leader_election_schema():
    render_fails({"leaderElection": {"leaseDuration": "fifteen"}})
    render_fails({"leaderElection": {"lease": "15s"}})
    timed = config_of(render({"leaderElection": {"leaseDuration": "30s", "renewDeadline": "20s",
                                                  "retryPeriod": "4s"}}))["leader_election"]
    expect_eq((timed["lease_duration"], timed["renew_deadline"], timed["retry_period"]),
              ("30s", "20s", "4s"), "durations reach config.yaml")


@check("PodDisruptionBudget: minAvailable 1 by default; maxUnavailable when set alone; none for one replica")
def _pdb():
    pdb = one(DEFAULT, "PodDisruptionBudget")
    expect_eq(pdb["spec"].get("minAvailable"), 1, "minAvailable")
    expect("maxUnavailable" not in pdb["spec"], "no maxUnavailable beside minAvailable")
    expect_eq(pdb["spec"]["selector"]["matchLabels"],
              one(DEFAULT, "Deployment")["spec"]["selector"]["matchLabels"], "selects our pods")
    pdb = one(render({"podDisruptionBudget": {"minAvailable": None, "maxUnavailable": 1}}),
              "PodDisruptionBudget")
    expect_eq((pdb["spec"].get("maxUnavailable"), "minAvailable" in pdb["spec"]), (1, False),
              "maxUnavailable")
    for values in ({"replicaCount": 1}, {"podDisruptionBudget": {"enabled": False}}):
        expect("PodDisruptionBudget" not in kinds(render(values)), f"no PDB with {values}")


@check("probes can be turned off one by one, in both modes")
def _probes_off():
    for web in (True, False):
        c = container(render({"web": {"enabled": web}, "probes": {"startup": {"enabled": False}}}))
        expect("startupProbe" not in c and "readinessProbe" in c and "livenessProbe" in c, "only startup off")
        c = container(render({"web": {"enabled": web}, "probes": {"liveness": {"enabled": False}}}))
        expect("livenessProbe" not in c and "readinessProbe" in c, "only liveness off")


# ------------------------------------------------------------------------------------------
# Monitoring (issue 22): PrometheusRule and dashboard ConfigMaps, off by default

MIXIN_RULES = ROOT / "mixin" / "hami-webui-server.rules.yaml"
DASHBOARD_FILES = sorted((CHART / "dashboards").glob("*.json"))
MONITORING_ON = {"monitoring": {"rules": {"enabled": True}, "dashboards": {"enabled": True}}}


def prometheus_rule(objects: dict) -> dict:
    return one(objects, "PrometheusRule")


def rules_by_name(rule_object: dict) -> dict[str, dict]:
    return {r.get("alert") or r["record"]: r for g in rule_object["spec"]["groups"] for r in g["rules"]}


def dashboard_maps(objects: dict) -> dict[str, dict]:
    """ConfigMap name -> ConfigMap, for those holding a dashboard."""
    return {name: o for (k, name), o in objects.items()
            if k == "ConfigMap" and any(key.endswith(".json") for key in o.get("data", {}))}


def promtool_check(groups: list[dict]) -> None:
    """promtool check rules on rendered groups (promtool: Debian package prometheus)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        try:
            result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise AssertionError("promtool not found: apt-get install prometheus, or run bash .ci/run") from exc
        expect(result.returncode == 0, f"promtool check rules: {result.stdout}{result.stderr}")


@check("monitoring: nothing rendered by default")
def _monitoring_off():
    expect("PrometheusRule" not in kinds(DEFAULT), "no PrometheusRule by default")
    expect_eq(dashboard_maps(DEFAULT), {}, "no dashboard ConfigMaps by default")
    off = render({"monitoring": {"rules": {"enabled": False}, "dashboards": {"enabled": False}},
                  "serviceMonitor": {"enabled": True}})
    expect("PrometheusRule" not in kinds(off) and not dashboard_maps(off), "nothing when both are false")


@check("monitoring: helm lint --strict with rules and dashboards enabled")
def _monitoring_lint():
    report = helm.lint(str(CHART), MONITORING_ON, strict=True, namespace=NAMESPACE)
    expect_eq(report["errors"], [], "lint errors")
    expect_eq([m for m in report["messages"] if m["severity"] >= 2], [], "lint warnings and errors")


@check("monitoring: the generated mixin files are current (python3 mixin/generate.py --check)")
def _mixin_current():
    result = subprocess.run([sys.executable, str(ROOT / "mixin" / "generate.py"), "--check"],
                            capture_output=True, text=True)
    expect(result.returncode == 0, result.stdout + result.stderr)


MONITORING = render(MONITORING_ON)


@check("monitoring: the PrometheusRule is named and labelled like the ServiceMonitor, groups = mixin file")
def _prometheus_rule():
    rule = prometheus_rule(MONITORING)
    expect_eq(rule["apiVersion"], "monitoring.coreos.com/v1", "apiVersion")
    expect_eq((rule["metadata"]["name"], rule["metadata"]["namespace"]), (FULLNAME, NAMESPACE), "name")
    expect_eq(rule["metadata"]["labels"]["app.kubernetes.io/instance"], RELEASE, "chart labels")
    plain = yaml.safe_load(MIXIN_RULES.read_text())["groups"]
    expect_eq(rule["spec"]["groups"], plain, "groups (the plain file is the default rendering)")
    for name, r in rules_by_name(rule).items():
        if "alert" in r:
            expect(set(r["annotations"]) == {"summary", "description", "runbook"}, f"{name}: annotations")
            expect(r["labels"]["severity"] in {"critical", "warning", "info"}, f"{name}: severity")
    labelled = prometheus_rule(render({"monitoring": {"rules": {
        "enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}}}}))
    expect_eq(labelled["metadata"]["labels"].get("release"), "kube-prometheus-stack", "additionalLabels")


@check("monitoring: thresholds, durations, selector, alert labels and disabled alerts come from values")
def _rules_from_values():
    objects = render({
        "metricsExporter": {"interval": "1m30s"},
        "monitoring": {"rules": {
            "enabled": True, "selector": 'job="gpu-webui"', "alertLabels": {"team": "gpu", "severity": "page"},
            "disabled": ["HAMiContainerGPUIdle"],
            "device": {"temperatureCelsius": 80, "temperatureFor": "2m", "criticalXids": [79, 48],
                       "powerWatts": 650, "powerWattsByModel": {"NVIDIA A100-SXM4-80GB": 400, "Model.X (2)": 250}},
            "container": {"memoryAboveAllocationRatio": 1.2},
            "server": {"staleIntervals": 4, "decodeErrorsWindow": "1h", "upstreamErrorRatio": 0.25},
        }},
    })
    rule = prometheus_rule(objects)
    rules = rules_by_name(rule)
    expect("HAMiContainerGPUIdle" not in rules, "disabled alert left out")
    temp = rules["HAMiGPUTemperatureHigh"]
    expect(temp["expr"].rstrip().endswith("> 80") and temp["for"] == "2m", f"temperature: {temp}")
    expect("80 °C" in temp["annotations"]["summary"], "threshold in the summary")
    expect_eq((temp["labels"]["team"], temp["labels"]["severity"]), ("gpu", "warning"),
              "alertLabels added; the rule's severity wins")
    expect("team" not in rules["hami_node:vgpu_allocation:ratio"].get("labels", {}), "recording rules untouched")
    xid = rules["HAMiGPUXidCritical"]["expr"]
    expect("== 79" in xid and "== 48" in xid and "== 61" not in xid, f"critical XIDs: {xid}")
    power = rules["HAMiGPUPowerHigh"]["expr"]
    expect('device_type!~"Model\\\\.X \\\\(2\\\\)|NVIDIA A100-SXM4-80GB"}) > 650' in power, f"power default: {power}")
    expect('device_type="NVIDIA A100-SXM4-80GB"}) > 400' in power and '"Model.X (2)"}) > 250' in power,
           f"power per model: {power}")
    stale = rules["HAMiWebUIRefreshStale"]["expr"]
    expect("> 360)" in stale and "unless hami_webui_leader" in stale, f"stale after 4 x 90 s, leaders only: {stale}")
    expect("[1h]" in rules["HAMiWebUIDecodeErrors"]["expr"] and "offset 1h" in rules["HAMiWebUIDecodeErrors"]["expr"],
           "decode error window")
    expect(rules["HAMiContainerMemoryAboveAllocation"]["expr"].rstrip().endswith("> 1.2"), "container ratio")
    expect(rules["HAMiWebUIUpstreamQueriesFailing"]["expr"].rstrip().endswith("> 0.25"), "upstream ratio")
    # Every selector of a server family (hami_*, not a recording rule's hami_level:…) is confined.
    import re
    for name, r in rules.items():
        for match in re.finditer(r"\b(hami_[a-z_]+)(\{[^}]*\})?", r["expr"]):
            if match.group(1) in {"hami_device", "hami_container", "hami_node", "hami_namespace", "hami_model"}:
                continue  # a recording rule's level prefix (hami_device:…)
            if r["expr"][match.end(1):match.end(1) + 1] == ":":
                continue
            expect(match.group(2) is not None and 'job="gpu-webui"' in match.group(2),
                   f"{name}: {match.group(0)} carries the selector")
    promtool_check(rule["spec"]["groups"])


@check("monitoring: no critical XIDs renders no XID alert and a plain health alert")
def _no_critical_xids():
    rules = rules_by_name(prometheus_rule(render({"monitoring": {"rules": {
        "enabled": True, "device": {"criticalXids": []}}}})))
    expect("HAMiGPUXidCritical" not in rules, "no XID alert")
    expect("unless" not in rules["HAMiGPUUnhealthy"]["expr"], "health alert without the XID exception")
    promtool_check([{"name": "g", "rules": list(rules.values())}])


@check("monitoring: one dashboard ConfigMap per JSON file, labelled for Grafana's sidecar")
def _dashboard_maps():
    maps = dashboard_maps(MONITORING)
    expect_eq(len(maps), len(DASHBOARD_FILES), "ConfigMaps")
    expect(len(DASHBOARD_FILES) >= 3, "three dashboards")
    by_file = {}
    for name, cm in maps.items():
        expect_eq(cm["metadata"]["namespace"], NAMESPACE, f"{name} namespace")
        expect_eq(cm["metadata"]["labels"].get("grafana_dashboard"), "1", f"{name} sidecar label")
        ((key, text),) = cm["data"].items()
        by_file[key] = text
        expect(name.startswith(FULLNAME) and len(name) <= 63, f"{name}: fullname prefix, 63 characters")
    for path in DASHBOARD_FILES:
        expect_eq(by_file.get(path.name), path.read_text().rstrip("\n"), f"{path.name} shipped unchanged")
        json.loads(by_file[path.name])
    custom = dashboard_maps(render({"fullnameOverride": "x" * 63, "monitoring": {"dashboards": {
        "enabled": True, "label": "example.com/dashboard", "labelValue": "hami",
        "annotations": {"grafana_folder": "GPU"}, "namespace": "monitoring"}}}))
    expect_eq(len(custom), len(DASHBOARD_FILES), "names stay distinct when truncated")
    numeric = dashboard_maps(render({"monitoring": {"dashboards": {"enabled": True, "labelValue": 1}}}))
    expect(all(cm["metadata"]["labels"]["grafana_dashboard"] == "1" for cm in numeric.values()),
           "a numeric labelValue (helm --set) renders as the string label value")
    for name, cm in custom.items():
        expect(len(name) <= 63, f"{name}: at most 63 characters")
        expect_eq(cm["metadata"]["labels"].get("example.com/dashboard"), "hami", "custom label")
        expect("grafana_dashboard" not in cm["metadata"]["labels"], "only the configured label")
        expect_eq(cm["metadata"]["annotations"], {"grafana_folder": "GPU"}, "annotations")
        expect_eq(cm["metadata"]["namespace"], "monitoring", "namespace override")


# ------------------------------------------------------------------------------------------
# The server itself loads what the chart renders


def server_binary() -> Path | None:
    explicit = os.environ.get("HAMI_WEBUI_SERVER_BIN")
    if explicit:
        return Path(explicit)
    for profile in ("release", "debug"):
        candidate = ROOT / "target" / profile / "hami-webui-server"
        if candidate.is_file():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str) -> tuple[int | None, Message, str]:
    """(status or None when nothing answers, headers (case-insensitive), body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return reply.status, reply.headers, reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, ""
    except OSError:
        return None, Message(), ""


def http_status(port: int, path: str) -> int | None:
    return http_get(port, path)[0]


TEST_INDEX = '<!doctype html><html><head><base data-hami-webui-base href="/"></head><body>console</body></html>\n'


def serve_rendered(objects: dict, workdir: Path) -> None:
    """Starts the server as the rendered container runs it — its arguments, its environment,
    its config.yaml (secret paths moved into workdir) — against the demo snapshot, with each
    container port moved to a free loopback port and a test console as /apps/public. Every
    rendered probe must answer 200 on the port it names; the console must be served under
    the base path (or, with the public listener off, nothing may listen on its port). No
    unknown-key warning."""
    config = config_of(objects)
    text = yaml.safe_dump(config).replace(SECRETS_DIR, f"{workdir}/secrets/")
    for path in file_settings(yaml.safe_load(text)).values():
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("placeholder\n")
    if "tls" in config["prometheus"] and "ca_file" in config["prometheus"]["tls"]:
        tls = workdir / "secrets" / "tls"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "1", "-subj", "/CN=test", "-keyout", str(tls / "tls.key"),
                        "-out", str(tls / "tls.crt")], check=True, capture_output=True)
        (tls / "ca.crt").write_bytes((tls / "tls.crt").read_bytes())
    conf = workdir / "config.yaml"
    conf.write_text(text)
    public = workdir / "public"
    public.mkdir()
    (public / "index.html").write_text(TEST_INDEX)

    c = container(objects)
    expect_eq(c["command"], ["/apps/hami-webui"], "command")
    args = [str(conf) if a == "/apps/config/config.yaml" else a for a in c["args"]]
    ports = {p["name"]: free_port() for p in c["ports"]}
    ports.setdefault("http", free_port())  # to prove nothing listens there when it is not rendered
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir)}
    # The downward API's fields, as the kubelet would fill them in.
    fields = {"metadata.name": f"{FULLNAME}-0", "metadata.namespace": NAMESPACE}
    env |= {v["name"]: v["value"] if "value" in v else fields[v["valueFrom"]["fieldRef"]["fieldPath"]]
            for v in c.get("env", [])}
    env |= {"HAMI_WEBUI__SERVER__HTTP__ADDR": f"127.0.0.1:{ports['metrics']}",
            "HAMI_WEBUI_LISTEN_ADDRESS": f"127.0.0.1:{ports['http']}",
            "HAMI_WEBUI_STATIC_DIR": str(public)}
    log = workdir / "server.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen([str(BINARY), *args, "--snapshot", str(ROOT / "examples" / "demo-cluster.json")],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while http_status(ports["metrics"], "/readyz") != 200:
            expect(proc.poll() is None, f"server exited {proc.returncode}: {log.read_text()[-2000:]}")
            expect(time.monotonic() < deadline, f"/readyz not 200 within 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        for probe, (path, port) in probes_of(objects).items():
            expect(port in [p["name"] for p in c["ports"]], f"{probe} names a container port ({port})")
            status = None
            while (status := http_status(ports[port], path)) != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            expect_eq(status, 200, f"{probe} {path} on {port}")
        web = env.get("HAMI_WEBUI__WEB__ENABLED") != "false"
        if web:
            base = env["HAMI_WEBUI_BASE_PATH"]
            status, headers, body = http_get(ports["http"], base)
            expect_eq(status, 200, f"console at {base}")
            expect(f'href="{base}"' in body, f"base tag rewritten to {base}: {body}")
            flag = [a for a in args if a.startswith("--frame-ancestors-json=")]
            csp = headers.get("Content-Security-Policy")
            if flag:
                # The console's policy, ending with the framing sites the flag names.
                expected = "; frame-ancestors " + " ".join(json.loads(flag[0].split("=", 1)[1]))
                expect(csp is not None and csp.startswith("default-src 'self'") and csp.endswith(expected),
                       f"CSP header ends with {expected!r}: {csp!r}")
            else:
                expect(csp is None or "frame-ancestors" not in csp, f"no frame-ancestors policy: {csp}")
        else:
            expect_eq(http_status(ports["http"], "/health_check"), None, "nothing listens on the public port")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    expect("unknown configuration keys" not in log.read_text(), f"no unknown keys: {log.read_text()[-2000:]}")


BINARY = server_binary()
if BINARY is None or not BINARY.is_file():
    print("skip the server runs the rendered container (no built binary; set HAMI_WEBUI_SERVER_BIN)")
else:
    SERVED = {
        "default": DEFAULT,
        "2.0 values": RENDERED_UPSTREAM,
        "frameAncestors and base path": render({"frontend": {"basePath": "/a/gpu-ui",
                                                             "frameAncestors": ["'self'", "https://portal.example.com"]}}),
        "web.enabled false": render({"web": {"enabled": False}}),
    }
    shown = BINARY.relative_to(ROOT) if BINARY.is_relative_to(ROOT) else BINARY
    for label, objects in SERVED.items():

        @check(f"{label}: {shown} runs as the rendered container; every probe answers 200 on its port")
        def _serve(objects=objects):
            with tempfile.TemporaryDirectory() as workdir:
                serve_rendered(objects, Path(workdir))


# ------------------------------------------------------------------------------------------
# Invalid values are refused

# (values, a phrase the refusal must contain)
INVALID = {
    "authorization together with basicAuth": ({"externalPrometheus": {
        "authorization": {"existingSecret": "a", "credentialsKey": "t"},
        "basicAuth": {"existingSecret": "b", "usernameKey": "u", "passwordKey": "p"}}},
        "mutually exclusive"),
    "authorization Secret without key": (
        {"externalPrometheus": {"authorization": {"existingSecret": "a"}}},
        "existingSecret and credentialsKey together"),
    "TLS certKey without keyKey": (
        {"externalPrometheus": {"tls": {"existingSecret": "t", "certKey": "c"}}},
        "certKey and keyKey go together"),
    "TLS caKey without Secret": ({"externalPrometheus": {"tls": {"caKey": "ca.crt"}}}, "need existingSecret"),
    "externalPrometheus enabled without address": (
        {"externalPrometheus": {"enabled": True, "address": ""}}, "externalPrometheus.address is required"),
    "misspelt key (schema)": ({"externalPrometheus": {"adress": "http://x:9090"}}, "'adress' not allowed"),
    "bad duration (schema)": ({"metricsExporter": {"interval": "thirty seconds"}}, "/metricsExporter/interval"),
    "bad annotationlessPodMode (schema)": (
        {"ascend": {"annotationlessPodMode": "maybe"}}, "/ascend/annotationlessPodMode"),
    "non-integer probe threshold (schema)": (
        {"probes": {"startup": {"failureThreshold": "many"}}}, "/probes/startup/failureThreshold"),
    "unknown vendor (schema)": ({"vendorNodeSelectors": {"Nvidiaa": "gpu=on"}}, "invalid propertyName 'Nvidiaa'"),
    "address without scheme (schema)": (
        {"externalPrometheus": {"enabled": True, "address": "prom:9090"}}, "/externalPrometheus/address"),
    "zero max concurrency (schema)": (
        {"externalPrometheus": {"maxConcurrency": 0}}, "/externalPrometheus/maxConcurrency"),
    "root user (schema)": ({"securityContext": {"runAsUser": -1}}, "/securityContext/runAsUser"),
    "web.enabled not a boolean (schema)": ({"web": {"enabled": "yes"}}, "/web/enabled"),
    "misspelt frontend key (schema)": ({"frontend": {"basepath": "/gpu/"}}, "'basepath' not allowed"),
    "base path with a space (schema)": ({"frontend": {"basePath": "/my gpu/"}}, "/frontend/basePath"),
    "base path with a dot segment": ({"frontend": {"basePath": "/a/../b/"}}, "not a plain URL path segment"),
    "base path with an empty segment (schema)": ({"frontend": {"basePath": "/a//b/"}}, "/frontend/basePath"),
    "base path shadowing /health_check": ({"frontend": {"basePath": "/health_check/"}}, "conflicts with /health_check"),
    "frameAncestors as a string (schema)": ({"frontend": {"frameAncestors": "'self'"}}, "/frontend/frameAncestors"),
    "frameAncestors wildcard (schema)": ({"frontend": {"frameAncestors": ["*"]}}, "/frontend/frameAncestors/0"),
    "frameAncestors with a path (schema)": (
        {"frontend": {"frameAncestors": ["https://portal.example.com/x"]}}, "/frontend/frameAncestors/0"),
    "env overriding the base path": (
        {"env": [{"name": "HAMI_WEBUI_BASE_PATH", "value": "/x/"}]}, "use frontend.basePath"),
    "env turning the web entry off": (
        {"env": [{"name": "HAMI_WEBUI__WEB__ENABLED", "value": "false"}]}, "use web.enabled"),
    "disabling an alert that does not exist": (
        {"monitoring": {"rules": {"enabled": True, "disabled": ["HAMiGPUTooHot"]}}}, 'no alert is named "HAMiGPUTooHot"'),
    "alert duration not a Prometheus duration (schema)": (
        {"monitoring": {"rules": {"device": {"temperatureFor": "10 minutes"}}}}, "/monitoring/rules/device/temperatureFor"),
    "rule selector with braces (schema)": (
        {"monitoring": {"rules": {"selector": '{job="x"}'}}}, "/monitoring/rules/selector"),
    "overcommit ratio above 1 (schema)": (
        {"monitoring": {"rules": {"device": {"overcommitUsedRatio": 90}}}}, "/monitoring/rules/device/overcommitUsedRatio"),
    "misspelt monitoring key (schema)": ({"monitoring": {"rules": {"enable": True}}}, "'enable' not allowed"),
}
for label, (values, reason) in INVALID.items():

    @check(f"refused: {label}")
    def _invalid(values=values, reason=reason):
        error = render_fails(values)
        expect(reason in error, f"refusal names the cause ({reason!r}): {error}")


# ------------------------------------------------------------------------------------------
# The schema describes every key of values.yaml, and only those

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def schema_node(path: list[str]):
    node = SCHEMA
    for key in path:
        props = node.get("properties", {})
        if key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


@check("schema: every values.yaml key is described (type and description)")
def _schema_covers_values():
    missing, undescribed = [], []
    for path in sorted(key_paths(VALUES)):
        node = schema_node(path.split("."))
        if node is None:
            missing.append(path)
        elif "type" not in node or ("description" not in node and not path.startswith("vendorNodeSelectors.")):
            undescribed.append(path)
    expect_eq(missing, [], "keys the schema does not describe")
    expect_eq(undescribed, [], "keys without type or description")


@check("schema: every described key exists in values.yaml")
def _schema_has_no_phantoms():
    phantoms = []

    def walk(node, path):
        for key, child in node.get("properties", {}).items():
            sub = path + [key]
            value = VALUES
            for part in sub:
                if not isinstance(value, dict) or part not in value:
                    phantoms.append(".".join(sub))
                    break
                value = value[part]
            else:
                walk(child, sub)

    walk(SCHEMA, [])
    expect_eq(phantoms, [], "schema keys absent from values.yaml")


@check("schema: our objects reject unknown keys; the top level accepts the 2.0 chart's others")
def _schema_strictness():
    expect(SCHEMA.get("additionalProperties") is True, "top level open")
    for name, node in SCHEMA["properties"].items():
        passthrough = {"vendorNodeSelectors", "resources", "podSecurityContext", "securityContext"}
        if node.get("type") == "object" and "properties" in node and name not in passthrough:
            expect(node.get("additionalProperties") is False, f"{name} is closed")


print(f"{len(PASSED)} passed, {len(FAILED)} failed")
sys.exit(1 if FAILED else 0)
