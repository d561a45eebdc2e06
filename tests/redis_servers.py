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
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")

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


class RedisServer:
    """One redis-server on 127.0.0.1:``port``, data in ``folder``."""

    def __init__(self, folder: Path, password: str | None = None, cluster: bool = False, port: int | None = None):
        self.folder, self.password, self.cluster = Path(folder), password, cluster
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(cluster)
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", "",
                "--daemonize", "no", "--protected-mode", "no"]
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
            raise RuntimeError(f"redis-server on port {self.port} did not start:\n{''.join(log)}")
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
    """Three masters, no replicas, slots split evenly (``redis-cli --cluster create``)."""

    def __init__(self, folder: Path, masters: int = 3):
        self.nodes = [RedisServer(Path(folder) / f"node{i}", cluster=True) for i in range(masters)]
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
