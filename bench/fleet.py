#!/usr/bin/env python3
"""A fleet on one PostgreSQL, measured: bench/fleet.sh runs this (see its header).

N baton processes (release build, one thread each) share a throwaway PostgreSQL (initdb into
the run directory, as the `postgres` user when run as root). While wrk loops through five of
them (the proxy, cache-hit path, to an nginx backend), WRITES admin writes go through baton 0;
for each, the time from the writer's answer until every baton serves the new revision
(`/readyz` `store.revision`), polled by a thread per baton every POLL_MS. Then the same for
the config file: each baton's file is a ConfigMap-style layout (`baton.toml ->
..data/baton.toml`, `..data` swapped atomically), and the time from a swap until that baton's
`config_generation` moves. Prints p50/p99/max of both, wrk's failed requests (non-2xx and
socket errors) and one baton's RSS.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

BATON = os.environ["BATON_BIN"]
ROOT = os.environ.get("FLEET_ROOT", "/tmp/baton-fleet")
N = int(os.environ.get("BATONS", "50"))
WRITES = int(os.environ.get("WRITES", "100"))
FILE_CHANGES = int(os.environ.get("FILE_CHANGES", "20"))
LOADED = int(os.environ.get("LOADED", "5"))
POLL_MS = float(os.environ.get("POLL_MS", "5"))
PG_BIN = os.environ.get("PG_BIN", "")
ADMIN_TOKEN = "fleet-admin-token-0123456789abcdef"
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
IDP_SECRET = b"fleet-idp-secret-0123456789abcdef"
PASSWORD = "fleet-pw"

processes = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def start(args, log, env=None, preexec=None):
    out = open(log, "wb")
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec)
    processes.append(p)
    return p


def pg_bin():
    if PG_BIN:
        return PG_BIN
    base = "/usr/lib/postgresql"
    versions = sorted(os.listdir(base), key=lambda v: int(v.split(".")[0]))
    return os.path.join(base, versions[-1], "bin")


def start_postgres():
    data_root = os.path.join(ROOT, "pg")
    os.makedirs(data_root)
    as_postgres = None
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(data_root, user.pw_uid, user.pw_gid)

        def as_postgres():
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    password_file = os.path.join(data_root, "password")
    with open(password_file, "w") as f:
        f.write(PASSWORD)
    if as_postgres:
        os.chown(password_file, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
    data = os.path.join(data_root, "data")
    subprocess.run(
        [os.path.join(pg_bin(), "initdb"), "-D", data, "-U", "baton", "--auth=scram-sha-256",
         "--no-sync", f"--pwfile={password_file}"],
        check=True, stdout=subprocess.DEVNULL, preexec_fn=as_postgres)
    port = free_port()
    start([os.path.join(pg_bin(), "postgres"), "-D", data, "-p", str(port), "-k", data_root,
           "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=400"],
          os.path.join(ROOT, "postgres.log"), preexec=as_postgres)
    wait_port(port, "postgres")
    time.sleep(0.5)
    return f"postgres://baton:{PASSWORD}@127.0.0.1:{port}/postgres"


def start_backend():
    port = free_port()
    conf = os.path.join(ROOT, "nginx.conf")
    tmp = os.path.join(ROOT, "nginx")
    os.makedirs(tmp)
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p;
  fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }} }}
""")
    start(["nginx", "-e", f"{tmp}/error.log", "-c", conf], os.path.join(ROOT, "nginx.log"))
    wait_port(port, "nginx")
    return port


def baton_config(proxy, admin, backend, version):
    idp_key = base64.urlsafe_b64encode(IDP_SECRET).rstrip(b"=").decode()
    return f"""
[server]
issuer = "https://baton.fleet"
watch_config = true

[proxy]
listen = "127.0.0.1:{proxy}"
upstream = "127.0.0.1:{backend}"
service = "file-app"
threads = 1

[admin]
listen = "127.0.0.1:{admin}"
token_env = "ADMIN_TOKEN"
master_key_env = "MASTER_KEY"

[store]
url_env = "BATON_STORE_URL"
migrate = true

[[keys]]
id = "sbk_file"
algorithm = "HS256"
secret = "sbsec_fleet_file_key"

[[idps]]
issuer = "https://file.idp/"
audience = "file-app"
algorithms = ["HS256"]
key = "{idp_key}"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "file-app"
key = "sbk_file"
mapping = {{ "sub.$" = "$.sub", "version" = "v{version}" }}
"""


class Node:
    def __init__(self, index, url, backend):
        self.index = index
        self.dir = os.path.join(ROOT, f"baton-{index}")
        self.mount = os.path.join(self.dir, "config")
        os.makedirs(os.path.join(self.mount, "..v0"))
        self.proxy, self.admin, self.backend = free_port(), free_port(), backend
        self.version = 0
        with open(os.path.join(self.mount, "..v0", "baton.toml"), "w") as f:
            f.write(baton_config(self.proxy, self.admin, backend, 0))
        os.symlink("..v0", os.path.join(self.mount, "..data"))
        os.symlink("..data/baton.toml", os.path.join(self.mount, "baton.toml"))
        env = dict(os.environ, ADMIN_TOKEN=ADMIN_TOKEN, MASTER_KEY=MASTER_KEY,
                   BATON_STORE_URL=url, RUST_LOG="warn")
        self.process = start([BATON, "serve", "--config", os.path.join(self.mount, "baton.toml")],
                             os.path.join(self.dir, "baton.log"), env=env)
        self.connection = None

    def get(self, path):
        for _ in range(2):
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
                self.connection.request("GET", path)
                response = self.connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                self.connection = None
        return 0, b""

    def readyz(self):
        status, body = self.get("/readyz")
        return json.loads(body) if body else {}

    def swap(self):
        """One ConfigMap update, as the kubelet writes it."""
        old = f"..v{self.version}"
        self.version += 1
        new = f"..v{self.version}"
        os.makedirs(os.path.join(self.mount, new))
        with open(os.path.join(self.mount, new, "baton.toml"), "w") as f:
            f.write(baton_config(self.proxy, self.admin, self.backend, self.version))
        os.symlink(new, os.path.join(self.mount, "..data_tmp"))
        os.rename(os.path.join(self.mount, "..data_tmp"), os.path.join(self.mount, "..data"))
        shutil.rmtree(os.path.join(self.mount, old))


def write(node, i):
    body = json.dumps({"service": f"fleet-{i % 10}", "keyId": "sbk_file",
                       "mapping": {"sub.$": "$.sub", "write": str(i)}})
    connection = http.client.HTTPConnection("127.0.0.1", node.admin, timeout=30)
    connection.request("POST", "/token-providers", body,
                       {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 204:
        sys.exit(f"write {i}: {response.status}")


def wait_all(nodes, predicate, since):
    """Polls every node (a thread each) until predicate(node) holds; the seconds each took
    from `since` (one time for all, or one per node)."""
    times = [None] * len(nodes)
    starts = since if isinstance(since, list) else [since] * len(nodes)

    def poll(k):
        while time.time() - starts[k] < 30:
            if predicate(nodes[k]):
                times[k] = time.time() - starts[k]
                return
            time.sleep(POLL_MS / 1000)

    threads = [threading.Thread(target=poll, args=(k,)) for k in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if None in times:
        sys.exit("some batons never converged")
    return times


def token():
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"iss": "https://file.idp/", "aud": "file-app", "sub": "fleet-user",
                              "exp": int(time.time()) + 3600}).encode())
    signature = hmac.new(IDP_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def percentiles(values):
    values = sorted(values)
    p = lambda q: values[min(len(values) - 1, int(round(q * (len(values) - 1))))]
    return f"p50 {p(0.5) * 1000:7.1f} ms  p99 {p(0.99) * 1000:7.1f} ms  max {values[-1] * 1000:7.1f} ms"


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    url = start_postgres()
    backend = start_backend()
    nodes = []
    for i in range(N):
        nodes.append(Node(i, url, backend))
        if i == 0:
            wait_port(nodes[0].admin, "baton 0")
    for node in nodes:
        wait_port(node.admin, f"baton {node.index}")
    wait_all(nodes, lambda n: n.readyz().get("store", {}).get("connected"), time.time())
    print(f"{N} batons on one PostgreSQL; wrk through {LOADED} of them")

    duration = WRITES * 0.4 + FILE_CHANGES * 0.5 + 10
    bearer = token()
    wrks = [subprocess.Popen(["wrk", "-t1", "-c4", f"-d{int(duration)}s", "-H",
                              f"Authorization: Bearer {bearer}", f"http://127.0.0.1:{n.proxy}/"],
                             stdout=subprocess.PIPE, text=True) for n in nodes[1:1 + LOADED]]
    time.sleep(2)

    store_times = []
    for i in range(WRITES):
        revision = nodes[0].readyz()["store"]["revision"]
        write(nodes[0], i)
        acknowledged = time.time()
        times = wait_all(nodes, lambda n: n.readyz().get("store", {}).get("revision", 0) > revision,
                         acknowledged)
        store_times.append(max(times))
        time.sleep(0.2)

    file_times = []
    for _ in range(FILE_CHANGES):
        generations = [n.readyz()["config_generation"] for n in nodes]
        swapped = []
        for n in nodes:
            n.swap()
            swapped.append(time.time())
        before = {n.index: g for n, g in zip(nodes, generations)}
        file_times.extend(wait_all(
            nodes, lambda n: n.readyz().get("config_generation", 0) > before[n.index], swapped))
        time.sleep(0.3)

    failed = 0
    requests = 0
    for w in wrks:
        out, _ = w.communicate()
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("Non-2xx"):
                failed += int(line.split()[-1])
            if line.startswith("Socket errors"):
                failed += sum(int(part.split()[-1]) for part in line.split(":", 1)[1].split(","))
            if "requests in" in line:
                requests += int(line.split()[0])
    with open(f"/proc/{nodes[0].process.pid}/status") as f:
        rss = next(l for l in f if l.startswith("VmRSS")).split()[1]

    print(f"store write -> served by all {N}: {percentiles(store_times)}  ({WRITES} writes)")
    print(f"config file swap -> served:      {percentiles(file_times)}  ({FILE_CHANGES} x {N} swaps)")
    print(f"wrk through {LOADED} batons: {requests} requests, {failed} failed")
    print(f"RSS of baton 0: {int(rss) / 1024:.1f} MiB")
    goals = [
        ("p99 store convergence < 1 s", sorted(store_times)[int(0.99 * (len(store_times) - 1))] < 1.0),
        ("p99 file convergence < 200 ms", sorted(file_times)[int(0.99 * (len(file_times) - 1))] < 0.2),
        ("0 failed requests", failed == 0),
    ]
    for name, met in goals:
        print(f"  {name}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in reversed(processes):
            p.terminate()
        for p in processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
