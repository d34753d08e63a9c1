"""Runs a rendered pod's containers on this machine, the way the kubelet would start them:
its Secret and ConfigMap volumes written out as files, its environment resolved from the
rendered Secrets (and stand-ins for the operator's own), mount paths mapped into a
temporary directory, init containers one after another, then the main one. The binary is
the one under test; the database and bucket are real servers the caller started.
"""

import os
import subprocess
from pathlib import Path


class Objects:
    """The Secrets and ConfigMaps a pod can read: the chart's rendered ones, and the
    operator's (`existing`, name -> {key: text})."""

    def __init__(self, docs, existing):
        self.data = {}
        for doc in docs:
            if doc["kind"] in ("Secret", "ConfigMap"):
                self.data[doc["metadata"]["name"]] = {**doc.get("stringData", {}), **doc.get("data", {})}
        self.data.update(existing)

    def get(self, name, key=None):
        if name not in self.data:
            raise KeyError(f"the pod reads {name}, which neither the chart nor the test provides")
        values = self.data[name]
        if key is None:
            return values
        if key not in values:
            raise KeyError(f"{name} has no key {key}")
        return values[key]


def materialize(spec, objects, root):
    """Writes the pod's volumes under `root`; returns {mountPath: directory} per container."""
    volumes = {}
    for volume in spec.get("volumes", []):
        directory = Path(root) / "volumes" / volume["name"]
        directory.mkdir(parents=True, exist_ok=True)
        source = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get("name")
        if source:
            config = volume.get("secret") or volume.get("configMap")
            items = config.get("items") or [{"key": k, "path": k} for k in objects.get(source)]
            for item in items:
                (directory / item["path"]).write_text(objects.get(source, item["key"]))
        volumes[volume["name"]] = directory
    return volumes


def local(text, mounts):
    """A path inside the container as the directory it maps to here."""
    for mount_path, directory in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if text == mount_path or text.startswith(mount_path + "/"):
            return str(directory) + text[len(mount_path):]
    return text


def environment(container, objects, mounts):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    for source in container.get("envFrom", []):
        env.update(objects.get(source["secretRef"]["name"]))
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = local(variable["value"], mounts)
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = objects.get(ref["name"], ref["key"])
    return env


def run_pod(spec, objects, binary, root):
    """Runs the init containers, then the containers; returns [(name, completed process)],
    stopping at the first that fails."""
    volumes = materialize(spec, objects, root)
    results = []
    for container in spec.get("initContainers", []) + spec["containers"]:
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
        args = [local(arg, mounts) for arg in container.get("args", [])]
        result = subprocess.run(
            [str(binary), *args], env=environment(container, objects, mounts), cwd=root,
            capture_output=True, text=True, timeout=120,
        )
        results.append((container["name"], result))
        if result.returncode != 0:
            break
    return results
