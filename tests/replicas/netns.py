"""A few hosts on one machine: network namespaces on a bridge, for multi-host tests.

Every namespace, link and address is made here and deleted in ``close`` (also on
failure). The bridge lives in a namespace of its own, so nothing is added to the
machine's own network namespace: traffic only flows between our namespaces, on
10.77.0.0/24.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import pytest

SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def unavailable_reason() -> str | None:
    """Why this machine cannot run the namespace tests, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (CI runs as root)"
    if shutil.which("ip") is None:
        return "needs `ip` from iproute2 (apt-get install iproute2)"
    probe = f"bwprobe{os.getpid()}"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"`ip netns add` fails here: {result.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Lab:
    """Hosts by name, each a namespace with one address on a shared bridge."""

    hosts: dict[str, str] = field(default_factory=dict)  # host name -> address
    prefix: str = field(default_factory=lambda: f"bw{os.getpid() % 100000}")
    _namespaces: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def exec_prefix(self, host: str) -> list[str]:
        """Prefix a command with this to run it on ``host``."""
        return ["ip", "netns", "exec", self.ns(host)]

    def start(self, names: list[str]) -> "Lab":
        self._add_ns(self.switch)
        self._in(self.switch, "link", "add", "br0", "type", "bridge")
        self._in(self.switch, "link", "set", "br0", "up")
        for index, name in enumerate(names, start=11):
            ns, port = self.ns(name), f"p{index}"
            self._add_ns(ns)
            # Both ends are born inside our namespaces, never in the machine's own.
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.switch)
            self._in(self.switch, "link", "set", port, "master", "br0")
            self._in(self.switch, "link", "set", port, "up")
            address = f"{SUBNET}.{index}"
            self._in(ns, "addr", "add", f"{address}/24", "dev", "eth0")
            self._in(ns, "link", "set", "eth0", "up")
            self._in(ns, "link", "set", "lo", "up")
            self.hosts[name] = address
        return self

    def close(self) -> None:
        """Delete every namespace made here; their veth pairs and the bridge go with them."""
        for ns in reversed(self._namespaces):
            _ip("netns", "del", ns, check=False)
        self._namespaces.clear()

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "del", ns, check=False)  # a leftover of a killed earlier run of ours
        _ip("netns", "add", ns)
        self._namespaces.append(ns)

    @staticmethod
    def _in(ns: str, *args: str) -> None:
        _ip("-n", ns, *args)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def lab_of(names: list[str], **kw) -> Iterator[Lab]:
    """A started ``Lab`` of ``names``, closed afterwards; the test skips (one reason) where
    namespaces cannot be made."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(**kw)
    try:
        lab.start(names)
        yield lab
    finally:
        lab.close()
