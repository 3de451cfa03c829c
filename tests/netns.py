"""Test "hosts" on one machine: Linux network namespaces joined to the root one by veth pairs.

A client in a namespace reaches a server in the root namespace over a real
(virtual) network link, from an address of its own, so tests can tell two
clients apart by address, or cut one off, as with two machines. Needs root
and iproute2's ``ip``.

Host N (from 1) gets the subnet 10.213.N.0/24, or the next free one: the root
namespace's end of the link is ``gateway`` (10.213.N.1), the namespace's end
is ``address`` (10.213.N.2). A server that should be reachable from the host
must listen on the gateway. Inside a namespace, 127.0.0.1 is the namespace's
own loopback, not the machine's.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

SUBNET_PREFIX = "10.213"
# Tells apart the TestHosts of one process; the pid tells apart processes.
_instances = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; with check, raise RuntimeError with ip's message on failure."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


@functools.cache
def why_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can (tried once, then cached)."""
    if os.geteuid() != 0:
        return "network namespaces for the test hosts need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the ip command (Debian's iproute2) is missing; the test hosts need it"
    probe = f"rc{os.getpid()}probe"
    added = _ip("netns", "add", probe, check=False)
    if added.returncode != 0:
        return f"ip netns add failed: {added.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


@dataclass(frozen=True)
class Host:
    """One network namespace and its link to the root namespace."""

    name: str  # the namespace, for ip netns exec
    address: str  # the namespace's end of the link: the client's source address
    gateway: str  # the root namespace's end: where servers must listen

    def command(self, argv: Sequence[str]) -> list[str]:
        """argv run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


class TestHosts:
    """``count`` network namespaces, each a Host; a context manager that deletes them.

    Names are ``rc<pid><instance><letter>`` (namespace) and that plus ``h``
    (the root end of the veth, at most 15 characters, the kernel's limit);
    the namespace's end is ``eth0``.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, count: int = 2) -> None:
        if not 1 <= count <= 26:
            raise ValueError(f"count must be 1 to 26, not {count}")
        self.count = count
        self.hosts: list[Host] = []
        self._prefix = f"rc{os.getpid()}{next(_instances)}"
        self._links: list[str] = []

    def create(self) -> None:
        """Make the namespaces and links; on any failure, delete what was made."""
        try:
            subnets = self._free_subnets()
            for index in range(self.count):
                self._add_host(chr(ord("a") + index), subnets[index])
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self) -> None:
        """Delete every namespace and veth this object made; safe to call twice.

        Deleting a namespace deletes the veth end inside it, and with it its
        peer, but a host whose namespace step failed can leave a root-side
        veth behind, so those are deleted by name too.
        """
        for host in self.hosts:
            _ip("netns", "delete", host.name, check=False)
        for link in self._links:
            if _ip("link", "show", link, check=False).returncode == 0:
                _ip("link", "delete", link, check=False)
        self.hosts.clear()
        self._links.clear()

    def __enter__(self) -> Self:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def _add_host(self, letter: str, subnet: int) -> None:
        """Namespace, veth pair, addresses, routes: one Host appended to hosts."""
        name = f"{self._prefix}{letter}"
        link = f"{name}h"
        gateway = f"{SUBNET_PREFIX}.{subnet}.1"
        address = f"{SUBNET_PREFIX}.{subnet}.2"
        _ip("netns", "add", name)
        # Recorded before the steps that can fail, so that cleanup finds them.
        self.hosts.append(Host(name=name, address=address, gateway=gateway))
        self._links.append(link)
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("addr", "add", f"{gateway}/24", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        # So that the host also reaches the root namespace's other addresses
        # (another host's gateway, say), not only its own gateway.
        _ip("-n", name, "route", "add", "default", "via", gateway)

    @staticmethod
    def _free_subnets() -> list[int]:
        """Every N with no address in 10.213.N.0/24 yet, so concurrent runs don't clash."""
        shown = _ip("-o", "-4", "addr", "show").stdout
        used = {
            int(word.split(".")[2])
            for word in shown.split()
            if word.startswith(f"{SUBNET_PREFIX}.") and word.count(".") == 3
        }
        return [n for n in range(1, 255) if n not in used]
