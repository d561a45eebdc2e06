"""Real redis-server processes on loopback for the tier tests (nothing is mocked).

Each server runs in its own folder with an append-only file synced on every
write, so a server killed with SIGKILL and started again has every write it
acknowledged.  Readiness is read from the server's own log line, not waited for.
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
OPENSSL = shutil.which("openssl")

try:  # the benchmarks use the servers too, without pytest
    import pytest

    needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server (apt-get install redis-server)")
except ImportError:
    pass


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(cluster: bool = False) -> int:
    """A free loopback port; a cluster node also needs port + 10000 (its bus), so at most 55535."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not cluster or (port <= 55535 and _bindable(port + 10000)):
            return port
        port = 20000 + port % 30000
        if _bindable(port) and _bindable(port + 10000):
            return port


@dataclass(frozen=True)
class TlsFiles:
    """PEM files made by :func:`make_tls_files`: a CA, a server certificate for 127.0.0.1 and localhost,
    and a client certificate, both signed by the CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """A throw-away CA and the certificates it signs, made with openssl (EC P-256 keys, valid 2 days)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args):
        out = subprocess.run([OPENSSL, *args], cwd=folder, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"openssl {' '.join(args)} failed:\n{out.stderr}")

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=embcache test CA")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        run("req", *key, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN=embcache test {who}")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{who}.crt", "-days", "2", "-extfile", f"{who}.ext")
    return TlsFiles(*(folder / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")))


class PortTaken(RuntimeError):
    """redis-server could not bind its port: something else took it after free_port() found it free."""


class RedisServer:
    """One redis-server on 127.0.0.1:``port``, data in ``folder``.

    ``tls`` makes it speak only TLS on ``port`` (clients must show a certificate the CA signed);
    ``users`` adds ACL users, name -> password, each allowed every command on every key;
    ``args`` are more ``redis-server`` options (``["--maxmemory", "4mb"]``).
    """

    def __init__(self, folder: Path, password: str | None = None, cluster: bool = False, port: int | None = None,
                 *, tls: TlsFiles | None = None, users: dict[str, str] | None = None, args: tuple = ()):
        self.folder, self.password, self.cluster = Path(folder), password, cluster
        self.tls, self.users, self.args = tls, dict(users or {}), list(args)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(cluster)
        self.proc = None
        for attempt in range(1 if port else 3):
            try:
                self.start()
                break
            except PortTaken:  # another test process (pytest -n) took the free port first: another one
                if port or attempt == 2:
                    raise
                self.port = free_port(cluster)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def client(self):
        """A redis-py client as the default user (with the server's password and TLS files)."""
        import redis

        extra = {}
        if self.tls:
            extra = dict(ssl=True, ssl_ca_certs=str(self.tls.ca), ssl_certfile=str(self.tls.client_cert),
                         ssl_keyfile=str(self.tls.client_key))
        return redis.Redis(port=self.port, password=self.password, **extra)

    def start(self) -> None:
        ports = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        args = [REDIS_SERVER, *ports, "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", "",
                "--daemonize", "no", "--protected-mode", "no"]
        if self.tls:
            args += ["--tls-cert-file", str(self.tls.server_cert), "--tls-key-file", str(self.tls.server_key),
                     "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "yes"]
        for name, secret in self.users.items():
            args += ["--user", name, "on", f">{secret}", "~*", "&*", "+@all"]
        args += self.args
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "yes"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log = []
        for line in self.proc.stdout:  # blocks until the server says it is ready (or exits)
            log.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            self.proc.wait()
            kind = PortTaken if any("already in use" in line for line in log) else RuntimeError
            raise kind(f"redis-server on port {self.port} did not start:\n{''.join(log)}")
        # keep draining the log so the server never blocks on a full pipe
        self._drain = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; only what the append-only file already holds survives."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._drain.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.kill()


class RedisCluster:
    """Three masters, no replicas, slots split evenly (``redis-cli --cluster create``).

    ``args`` go to every node (``["--cluster-require-full-coverage", "no"]`` keeps the others
    serving their slots while one is down)."""

    def __init__(self, folder: Path, masters: int = 3, args: tuple = ()):
        self.nodes = [RedisServer(Path(folder) / f"node{i}", cluster=True, args=args) for i in range(masters)]
        out = subprocess.run([REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                              "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True)
        if out.returncode:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out.stdout}\n{out.stderr}")
        self.wait_ok()

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def wait_ok(self, deadline_s: float = 30.0) -> None:
        """Until every node reports cluster_state:ok (gossip converges after create or a restart)."""
        import redis

        end = time.monotonic() + deadline_s
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            while client.cluster("info").get("cluster_state") != "ok":
                if time.monotonic() > end:
                    raise RuntimeError(f"cluster not ok after {deadline_s} s")
                time.sleep(0.05)  # polling a condition, bounded by the deadline
            client.close()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
