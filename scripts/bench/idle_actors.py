#!/usr/bin/env python3
"""Resident memory of a router holding SOURCES sources x DESTINATIONS webhook
destinations (each destination fed by every source), all idle, beside the same router
with one source and one destination (the baseline).

usage: idle_actors.py SWITCHYARD_BIN BROKERS SOURCES DESTINATIONS
prints: idle SOURCES DESTINATIONS ACTORS RSS_MIB BASELINE_RSS_MIB
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(brokers, topic, sources, destinations, ops_port):
    lines = [
        "[kafka]", f'brokers = "{brokers}"', f'topic = "{topic}"', "",
        "[ops]", f'listen = "127.0.0.1:{ops_port}"', "",
        "[ingest]", "allow_plain_http = true", "",
        "[router]", f'group_id = "{topic}-group"', "",
    ]
    ids = [f"s{n:05d}" for n in range(sources)]
    for source in ids:
        lines += ["[[sources]]", f'id = "{source}"', f'write_key = "key-{source}-0123456789"', ""]
    listed = ", ".join(f'"{s}"' for s in ids)
    for n in range(destinations):
        # An address literal: validation needs no DNS, and idle actors never connect.
        lines += [
            "[[destinations]]", f'id = "d{n}"', f"sources = [{listed}]", 'kind = "webhook"',
            f'url = "https://93.184.216.34/hook-{n}"', "",
        ]
    return "\n".join(lines)


def resident_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(binary, brokers, sources, destinations, workdir):
    ops_port = free_port()
    topic = f"idle-{os.getpid()}-{sources}"
    path = os.path.join(workdir, f"idle-{sources}.toml")
    with open(path, "w") as file:
        file.write(config(brokers, topic, sources, destinations, ops_port))
    subprocess.run([binary, "create-topic", "--kafka-brokers", brokers, "--topic", topic, "--partitions", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, RUST_LOG="warn")
    process = subprocess.Popen([binary, "router", "--config", path], stdout=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if process.poll() is not None:
                sys.exit(f"router exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            sys.exit("router never became ready")
        # Let start-up allocations settle, then take the steady figure.
        time.sleep(5)
        return resident_mib(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def main():
    binary, brokers, sources, destinations = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with tempfile.TemporaryDirectory() as workdir:
        baseline = measure(binary, brokers, 1, 1, workdir)
        loaded = measure(binary, brokers, sources, destinations, workdir)
    actors = sources + sources * destinations
    print(f"idle {sources} {destinations} {actors} {loaded:.0f} {baseline:.0f}")


if __name__ == "__main__":
    main()
