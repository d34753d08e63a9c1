#!/usr/bin/env python3
"""Chart tests, run by `make test` (no cluster needed).

For each values file in helm/tests/values/: render the chart (helm-python-sdk, the Helm
SDK without a helm binary), lint it, validate every manifest against the Kubernetes
schemas (kubernetes-validate --strict), scan it with checkov (every skip carries its
reason in the chart), and check the rendered configuration file with
`switchyard check-config`. Then feed values.schema.json bad values and expect refusals.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "switchyard"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/switchyard/target"))
SWITCHYARD = TARGET / "release" / "switchyard"
KUBE_VERSION = "1.30.0"
# Custom resources the Kubernetes schemas don't describe; checked for shape only.
CUSTOM_KINDS = {"ServiceMonitor"}

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}", file=sys.stderr)


def render(values):
    chart = helm_python.Chart.load(str(CHART))
    rendered = chart.render(values, name="sy", namespace="data")
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def stand_in_kafka_tls(values, directory):
    """check-config reads the TLS files the configuration names: a values file that mounts
    a Kafka TLS Secret gets test files (openssl) at a mount path in `directory`."""
    tls = values.get("kafka", {}).get("tls", {})
    if not tls.get("existingSecret"):
        return
    tls["mountPath"] = str(directory)
    cert, key = Path(directory) / "self.crt", Path(directory) / "self.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=kafka.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    for setting, source in (("caKey", cert), ("certKey", cert), ("keyKey", key)):
        if tls.get(setting, "ca.crt" if setting == "caKey" else ""):
            (Path(directory) / tls.get(setting, "ca.crt")).write_bytes(source.read_bytes())


def check_values_file(path):
    values = yaml.safe_load(path.read_text()) or {}
    name = path.stem
    mounted = tempfile.mkdtemp(prefix="kafka-tls-")
    stand_in_kafka_tls(values, mounted)
    try:
        docs = render(values)
    except helm_python.HelmError as error:
        fail(f"{name}: render: {error}")
        return
    report = helm_python.lint(str(CHART), values, strict=True, namespace="data", kube_version=f"v{KUBE_VERSION}")
    for message in report.get("messages", []):
        if message.get("severity", 0) >= 2:
            fail(f"{name}: lint: {message}")
    kinds = sorted({doc["kind"] for doc in docs})
    print(f"{name}: {len(docs)} manifests ({', '.join(kinds)})")
    with tempfile.TemporaryDirectory() as tmp:
        standard = [d for d in docs if d["kind"] not in CUSTOM_KINDS]
        manifest = Path(tmp) / "rendered.yaml"
        manifest.write_text(yaml.safe_dump_all(standard))
        result = subprocess.run(
            ["kubernetes-validate", "--strict", "--kubernetes-version", KUBE_VERSION, str(manifest)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            fail(f"{name}: kubernetes-validate:\n{result.stdout}{result.stderr}")
        for doc in docs:
            if doc["kind"] in CUSTOM_KINDS and not doc.get("spec", {}).get("endpoints"):
                fail(f"{name}: {doc['kind']} without endpoints")
        everything = Path(tmp) / "all.yaml"
        everything.write_text(yaml.safe_dump_all(docs))
        result = subprocess.run(
            ["checkov", "-f", str(everything), "--framework", "kubernetes", "--skip-download", "--quiet", "-o", "json"],
            capture_output=True,
            text=True,
        )
        try:
            scan = json.loads(result.stdout)
        except json.JSONDecodeError:
            fail(f"{name}: checkov did not answer JSON:\n{result.stdout}{result.stderr}")
            scan = {}
        for report in scan if isinstance(scan, list) else [scan]:
            summary = report.get("summary", {})
            print(f"{name}: checkov passed {summary.get('passed')}, failed {summary.get('failed')}, skipped {summary.get('skipped')} (reasons in the chart)")
            for check in report.get("results", {}).get("failed_checks", []):
                fail(f"{name}: checkov {check['check_id']} {check['check_name']} on {check['resource']}")
        secret = next((d for d in docs if d["kind"] == "Secret" and "switchyard.toml" in d.get("stringData", {})), None)
        if secret is not None:
            config = Path(tmp) / "switchyard.toml"
            config.write_text(secret["stringData"]["switchyard.toml"])
            # The chart hands SASL credentials to the process in these variables.
            env = {**os.environ, "SWITCHYARD_KAFKA_SASL_USERNAME": "switchyard", "SWITCHYARD_KAFKA_SASL_PASSWORD": "test"}
            result = subprocess.run(
                [str(SWITCHYARD), "check-config", "--config", str(config)], capture_output=True, text=True, env=env
            )
            if result.returncode != 0:
                fail(f"{name}: the rendered configuration is refused by switchyard:\n{result.stderr}")


def check_schema_refuses():
    base = yaml.safe_load((HERE / "values" / "minimal.yaml").read_text())
    # What is wrong, and where the schema's refusal must point.
    bad = {
        "an unknown top-level key": ({**base, "replicas": 3}, "'replicas'"),
        "zero router replicas": ({**base, "router": {"replicas": 0}}, "/router/replicas"),
        "a port out of range": ({**base, "ops": {"port": 70000}}, "/ops/port"),
        "a source id with a space": (
            {**base, "config": {"sources": [{"id": "my web", "write_key": "x" * 20}]}},
            "/config/sources/0/id",
        ),
        "a short write key": (
            {**base, "config": {"sources": [{"id": "web", "write_key": "short"}]}},
            "/config/sources/0/write_key",
        ),
        "no sources and no existing config secret": ({**base, "config": {"sources": []}}, "/config"),
        "an archive without a master key": (
            {**base, "archive": {"enabled": True, "store": {"bucket": "archive-bucket"}}},
            "/archive/masterKey",
        ),
        "an archive store of an unknown encryption": (
            {**base, "archive": {"store": {"bucket": "b", "sse": "rot13"}}},
            "/archive/store/sse",
        ),
        "SASL_SSL without a mechanism": (
            {**base, "kafka": {**base["kafka"], "securityProtocol": "SASL_SSL"}},
            "mechanism",
        ),
        "an unknown Kafka security protocol": (
            {**base, "kafka": {**base["kafka"], "securityProtocol": "TLS"}},
            "/kafka/securityProtocol",
        ),
        "an unknown destination kind": (
            {**base, "config": {**base["config"], "destinations": [{"id": "d", "sources": ["web"], "kind": "ftp"}]}},
            "/config/destinations/0/kind",
        ),
    }
    for what, (values, where) in bad.items():
        try:
            render(values)
        except helm_python.HelmError as error:
            text = str(error)
            if where not in text:
                fail(f"values.schema.json refused {what}, but not at {where}: {text}")
            else:
                print(f"schema refuses {what}: {text.strip().splitlines()[-1].strip()}")
            continue
        fail(f"values.schema.json accepted {what}")


def check_network_policy():
    """The ops port is closed unless the values name who may reach it, and the pods
    can't reach the metadata address or the cluster's own networks."""
    base = yaml.safe_load((HERE / "values" / "minimal.yaml").read_text())

    def policy(values):
        return next(d for d in render(values) if d["kind"] == "NetworkPolicy")["spec"]

    def ports(rule):
        return {p["port"] for p in rule.get("ports", [])}

    spec = policy(base)
    if any("ops" in ports(rule) for rule in spec["ingress"]):
        fail("network policy: the ops port is open by default")
    if "Egress" not in spec["policyTypes"]:
        fail("network policy: no egress policy by default")
    denied = [cidr for rule in spec.get("egress", []) for peer in rule.get("to", [])
              for cidr in peer.get("ipBlock", {}).get("except", [])]
    for needed in ["169.254.0.0/16", "10.0.0.0/8"]:
        if needed not in denied:
            fail(f"network policy: egress to {needed} is not denied by default ({denied})")
    selector = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    opened = policy({**base, "networkPolicy": {"opsNamespaceSelector": selector}})
    rules = [rule for rule in opened["ingress"] if "ops" in ports(rule)]
    if len(rules) != 1 or rules[0]["from"] != [{"namespaceSelector": selector}]:
        fail(f"network policy: the ops port is not opened to exactly the named namespace: {rules}")
    print("network policy: ops closed by default, opened to the named namespace; metadata and cluster CIDRs denied")


def main():
    if not SWITCHYARD.exists():
        print(f"{SWITCHYARD} is missing: build first (make build)", file=sys.stderr)
        return 2
    files = sorted((HERE / "values").glob("*.yaml"))
    for path in files:
        check_values_file(path)
    check_schema_refuses()
    check_network_policy()
    if failures:
        print(f"{len(failures)} chart check(s) failed", file=sys.stderr)
        return 1
    print(f"chart: {len(files)} values files rendered, validated, scanned and checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
