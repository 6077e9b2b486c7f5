"""A Redis Cluster of a test's own: three masters on free ports, no replicas, nothing persisted.

Each node keeps only its cluster configuration (nodes.conf, in the test's directory), so a node
that is killed and started again rejoins with the slots it had, and with no data, as a cluster
node without persistence does after a crash. The shared Redis is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests.delivery_support import PROCESS_START_TIMEOUT, free_ports, wait_for
from tests.redis_server import PrivateRedis

MASTERS = 3


class ClusterNode(PrivateRedis):
    """One node: a PrivateRedis started with the cluster's options, in a directory of its own."""

    def __init__(self, log_dir: Path, port: int, bus_port: int) -> None:
        super().__init__(log_dir, port)
        # The node's bus to the others: a free port of its own (by default the port + 10,000,
        # which a free port from the ephemeral range cannot have).
        self.bus_port = bus_port
        self.directory = log_dir / f"node-{self.port}"
        self.directory.mkdir()

    def server_options(self) -> list[str]:
        return [
            *super().server_options(),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-port", str(self.bus_port)),
            *("--dir", str(self.directory)),
        ]


class PrivateCluster:
    def __init__(self, log_dir: Path) -> None:
        # Every node's ports chosen together: chosen one by one, two could be the same.
        ports = free_ports(2 * MASTERS)
        self.nodes = [ClusterNode(log_dir, ports[2 * n], ports[2 * n + 1]) for n in range(MASTERS)]
        # A client finds every node from any one of them.
        self.url = f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> PrivateCluster:
        """Start the nodes, join them into one cluster and return once every slot is served."""
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is not installed: it joins the nodes into a cluster")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=PROCESS_START_TIMEOUT,
        )
        self.wait_until_served()
        return self

    def wait_until_served(self) -> None:
        """Every node says the cluster is ok (all 16,384 slots served), as a client will see."""
        wait_for(
            lambda: all(self._node_ok(node) for node in self.nodes),
            timeout=PROCESS_START_TIMEOUT,
            interval=0.1,
            what="the cluster to serve every slot",
        )

    @staticmethod
    def _node_ok(node: ClusterNode) -> bool:
        client = node.client()
        try:
            info = client.execute_command("CLUSTER", "INFO")
        except redis.ConnectionError:
            return False
        finally:
            client.close()
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def client(self) -> RedisCluster:
        return RedisCluster.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)


@pytest.fixture(name="private_cluster")
def private_cluster_fixture(tmp_path: Path) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(tmp_path)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
