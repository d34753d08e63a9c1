#!/usr/bin/env python3
"""Chart tests, run by `make test` (no cluster needed).

For each values file in helm/tests/values/: render the chart (helm-python-sdk, the Helm
SDK without a helm binary), lint it, validate every manifest against the Kubernetes
schemas (kubernetes-validate --strict), scan it with checkov (every skip carries its
reason in the chart), and check the rendered configuration file with
`switchyard check-config`. Then feed values.schema.json bad values and expect refusals,
and run the control plane's setup Job and backup CronJob as rendered against a real
Postgres and S3-compatible server (pods.py).
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import helm_python
import yaml

from pods import Objects, run_pod

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
    kafka_secrets, jobs = check_jobs_hold_no_kafka_secret(name, docs)
    if jobs:
        print(f"{name}: {jobs} Job(s) read none of the Kafka Secrets ({', '.join(sorted(kafka_secrets)) or 'none here'})")
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
            env = {**os.environ, "SWITCHYARD_KAFKA_SASL_USERNAME": "switchyard", "SWITCHYARD_KAFKA_SASL_PASSWORD": "test",
                   "SWITCHYARD_DATABASE_URL": "postgres://switchyard:test@postgres.invalid:5432/switchyard"}
            result = subprocess.run(
                [str(SWITCHYARD), "check-config", "--config", str(config)], capture_output=True, text=True, env=env
            )
            if result.returncode != 0:
                fail(f"{name}: the rendered configuration is refused by switchyard:\n{result.stderr}")


def pod_specs(docs):
    """(kind/name, pod spec) of every workload in the rendered chart."""
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if doc["kind"] in ("Deployment", "Job", "CronJob"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", spec["template"]["spec"]


def secrets_of(pod):
    """The Secret names a pod spec reads, by environment variable and volume."""
    names = {}
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.setdefault(ref["name"], set()).add(env["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.setdefault(source["secretRef"]["name"], set()).add("envFrom")
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            names.setdefault(volume["secret"]["secretName"], set()).add(f"volume {volume['name']}")
        for projected in volume.get("projected", {}).get("sources", []):
            if "secret" in projected:
                names.setdefault(projected["secret"]["name"], set()).add(f"volume {volume['name']}")
    return names


def check_jobs_hold_no_kafka_secret(name, docs):
    """The control plane's Jobs never talk to Kafka, so they must not hold its password
    or TLS key: the Kafka Secrets are those the router reads for SASL or mounts as
    kafka-tls, and no Job or CronJob may read any of them. Returns how many were checked."""
    kafka = set()
    for kind, pod in pod_specs(docs):
        for secret, uses in secrets_of(pod).items():
            if any(use.startswith("SWITCHYARD_KAFKA_") or use == "volume kafka-tls" for use in uses):
                kafka.add(secret)
    checked = 0
    for kind, pod in pod_specs(docs):
        if not kind.startswith(("Job/", "CronJob/")):
            continue
        checked += 1
        for secret, uses in secrets_of(pod).items():
            if secret in kafka:
                fail(f"{name}: {kind} reads the Kafka Secret {secret} ({', '.join(sorted(uses))})")
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            for env in container.get("env", []):
                if env["name"].startswith("SWITCHYARD_KAFKA_"):
                    fail(f"{name}: {kind} is given {env['name']}")
    return kafka, checked


def check_schema_refuses():
    base = yaml.safe_load((HERE / "values" / "minimal.yaml").read_text())
    with_key = {"masterKey": {"existingSecret": "switchyard-master-key"}}
    control = {"enabled": True, "database": {"existingSecret": "switchyard-database"}}
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
            "/masterKey",
        ),
        "a control plane without a master key": (
            {**base, "control": {"enabled": True, "database": {"url": "postgres://db/switchyard"}}},
            "/masterKey",
        ),
        "a control plane without a database": (
            {**base, **with_key, "control": {"enabled": True}},
            "/control/database",
        ),
        "a first owner without a password Secret": (
            {**base, **with_key, "control": {**control, "workspace": {"id": "acme"}, "owner": {"email": "o@acme.example"}}},
            "/control/owner",
        ),
        "a workspace file without a workspace id": (
            {**base, **with_key, "control": {**control, "apply": {"enabled": True, "workspace": "workspace: acme"}}},
            "/control/workspace",
        ),
        "a workspace id with capitals": (
            {**base, **with_key, "control": {**control, "workspace": {"id": "Acme"}}},
            "/control/workspace/id",
        ),
        "backups with nowhere to go": (
            {**base, **with_key, "control": {**control, "backup": {"enabled": True}}},
            "/control/backup/store/bucket",
        ),
        "a master key that isn't an age identity": (
            {**base, "masterKey": {"identity": "-----BEGIN PRIVATE KEY-----"}},
            "/masterKey/identity",
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


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto():
    """moto_server on a free port, stopped by PID; returns (process, endpoint)."""
    port = free_port()
    process = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            return process, endpoint
        except urllib.error.HTTPError:
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto_server did not start")


def s3_request(endpoint, method, path):
    """An unsigned request to moto (it accepts any credentials, and none)."""
    request = urllib.request.Request(f"{endpoint}{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def psql(url, sql):
    result = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {result.stderr.strip()}")
    return result.stdout


def check_control_jobs():
    """The setup Job and the backup CronJob rendered for control-plane.yaml, run as the
    kubelet would start them (helm/tests/pods.py) against a real Postgres and a real
    S3-compatible server: an install migrates, makes the workspace, its first owner and
    the workspace file's source and destination; an upgrade changes nothing; a backup
    lands in the bucket."""
    maintenance = os.environ.get("SWITCHYARD_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
    database = f"chart_jobs_{os.getpid()}"
    try:
        psql(maintenance, f"CREATE DATABASE {database}")
    except (RuntimeError, FileNotFoundError) as error:
        fail(f"control jobs: needs PostgreSQL at {maintenance} (apt-get install postgresql, or set "
             f"SWITCHYARD_TEST_POSTGRES to a maintenance-database URL): {error}")
        return
    moto, endpoint = start_moto()
    root = tempfile.mkdtemp(prefix="chart-jobs-")
    try:
        values = yaml.safe_load((HERE / "values" / "control-plane.yaml").read_text())
        bucket = values["control"]["backup"]["store"]["bucket"]
        # moto keeps no KMS keys: SSE-S3 here, KMS in the file itself.
        values["control"]["backup"]["store"].update({"endpoint": endpoint, "sse": "s3", "kmsKeyId": ""})
        s3_request(endpoint, "PUT", f"/{bucket}")
        key_file = Path(root) / "master.key"
        subprocess.run([str(SWITCHYARD), "master-key", "-o", str(key_file)], check=True, capture_output=True)
        url = maintenance.rsplit("/", 1)[0] + f"/{database}"
        docs = render(values)
        objects = Objects(docs, {
            "switchyard-database": {"DATABASE_URL": url},
            "switchyard-master-key": {"master.key": key_file.read_text()},
            "switchyard-owner": {"password": "correct horse battery staple"},
            "switchyard-workspace-credentials": {"HOOK_SIGNING_SECRET": "hook-signing-secret-from-a-secret"},
            "switchyard-archive-aws": {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"},
        })
        job = next(d for d in docs if d["kind"] == "Job")["spec"]["template"]["spec"]
        steps = {}
        for attempt in ("install", "upgrade"):
            results = run_pod(job, objects, SWITCHYARD, Path(root) / attempt)
            steps[attempt] = {name: result for name, result in results}
            for name, result in results:
                if result.returncode != 0:
                    fail(f"control jobs: the setup Job's {name} step failed on {attempt}:\n{result.stderr}")
                    return
        install, upgrade = steps["install"], steps["upgrade"]
        if list(install) != ["migrate", "owner", "apply"]:
            fail(f"control jobs: the setup Job ran {list(install)}")
        if json.loads(install["owner"].stdout).get("created") is not True:
            fail(f"control jobs: the first install made no workspace: {install['owner'].stdout}")
        if json.loads(upgrade["owner"].stdout).get("created") is not False:
            fail(f"control jobs: an upgrade made the workspace again: {upgrade['owner'].stdout}")
        report = json.loads(install["apply"].stdout)
        if sorted(report["report"]["created"]) != ["destination hook", "source web"] or "web" not in report["new_write_keys"]:
            fail(f"control jobs: apply made {report['report']['created']}, keys {list(report['new_write_keys'])}")
        again = json.loads(upgrade["apply"].stdout)["report"]
        if again["created"] or again["updated"] or sorted(again["unchanged"]) != ["destination hook", "source web"]:
            fail(f"control jobs: an upgrade's apply changed something: {again}")
        owners = psql(url, "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id "
                           "WHERE m.workspace_id = 'acme' AND m.role = 'owner'").split()
        if owners != ["owner@acme.example"]:
            fail(f"control jobs: workspace acme's owners are {owners}")
        cron = next(d for d in docs if d["kind"] == "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        results = run_pod(cron, objects, SWITCHYARD, Path(root) / "backup")
        name, result = results[-1]
        if result.returncode != 0:
            fail(f"control jobs: the backup CronJob failed:\n{result.stderr}")
            return
        listing = s3_request(endpoint, "GET", f"/{bucket}?list-type=2&prefix=control-backups/")
        written = result.stdout.strip()
        if not written or written not in listing:
            fail(f"control jobs: the backup CronJob printed {written!r}, the bucket lists {listing[:400]}")
            return
        print(f"control jobs: setup Job migrated, made workspace acme, its owner, source and destination; "
              f"an upgrade changed nothing; the backup CronJob wrote {written}")
    finally:
        moto.kill()
        moto.wait()
        psql(maintenance, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def main():
    if not SWITCHYARD.exists():
        print(f"{SWITCHYARD} is missing: build first (make build)", file=sys.stderr)
        return 2
    files = sorted((HERE / "values").glob("*.yaml"))
    for path in files:
        check_values_file(path)
    check_schema_refuses()
    check_network_policy()
    check_control_jobs()
    if failures:
        print(f"{len(failures)} chart check(s) failed", file=sys.stderr)
        return 1
    print(f"chart: {len(files)} values files rendered, validated, scanned and checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
