"""Hosts of one machine, each in a network namespace of its own with its own address.

A `Lab` makes a Linux bridge in the root namespace (`pynbr-SUFFIX`, address `NET.1/24`) and,
per host, a namespace (`pynh-SUFFIX-N`) joined to the bridge by a veth pair (`pynv-SUFFIX-N` in
the root namespace, `eth0` at `NET.(10+N)/24` inside). A server listening on the bridge address
is reachable from every host; `cut(n)` takes host n's link down (the root end of its veth: the
host sees no carrier, its packets are dropped, as in a partition) and `restore(n)` brings it
back. `command(n, hostname, argv)` runs a program inside host n, in a UTS namespace of its own
under `hostname`, so each host's processes also name their own host.

Every name carries a random suffix, the subnet is one no route of the machine uses, and
`close()` (also on `with` exit and at interpreter exit) deletes every namespace, veth and the
bridge the lab made, and nothing else. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and `ip`
from iproute2; `unavailable()` says why a lab cannot be made here, or None.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from types import TracebackType

IP_TIMEOUT = 20
#: Subnets tried, at random, for the bridge (the first free one is used).
SUBNET_ATTEMPTS = 50

#: Run as the program inside a host: set the host name, then become `argv`.
BECOME = (
    "import os, socket, sys; socket.sethostname(sys.argv[1]); os.execvp(sys.argv[2], sys.argv[2:])"
)


class LabError(RuntimeError):
    """A namespace, link or address could not be made; the message has `ip`'s words."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
    )
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (not root, no `ip`, no CAP_SYS_ADMIN), or
    None when they can: a probe namespace is made and deleted."""
    if sys.platform != "linux":
        return f"network namespaces are Linux only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: apt-get install iproute2"
    if shutil.which("unshare") is None:
        return "`unshare` (util-linux) is not installed: apt-get install util-linux"
    probe = f"pynh-probe-{secrets.token_hex(3)}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    try:
        run = subprocess.run(
            ["ip", "netns", "exec", probe, "unshare", "--uts", "true"],
            capture_output=True, text=True, timeout=IP_TIMEOUT, check=False,
        )  # fmt: skip
        if run.returncode != 0:
            return f"cannot run a process in a network namespace here: {run.stderr.strip()}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show").stdout
    nets = []
    for word in out.split():
        if word[:1].isdigit() and "/" in word:
            try:
                nets.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                continue
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def free_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """A /24 under 10.200.0.0/13 that no address or route of this machine overlaps."""
    used = _used_networks()
    for _ in range(SUBNET_ATTEMPTS):
        net = ipaddress.ip_network(f"10.{rng.randrange(200, 208)}.{rng.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise LabError(f"no free /24 under 10.200.0.0/13 after {SUBNET_ATTEMPTS} tries")


class Lab:
    """`hosts` namespaces on one bridge (see the module docs)."""

    def __init__(self, hosts: int, rng: random.Random | None = None) -> None:
        self.suffix = secrets.token_hex(3)
        self.bridge = f"pynbr-{self.suffix}"
        self.subnet = free_subnet(rng or random.Random())
        self.hosts = hosts
        self.namespaces: list[str] = []
        self.made_bridge = False
        self.cut_hosts: set[int] = set()
        atexit.register(self.close)
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    @property
    def server_address(self) -> str:
        """The bridge's address in the root namespace: where a server for the hosts listens."""
        return str(self.subnet.network_address + 1)

    def address(self, n: int) -> str:
        return str(self.subnet.network_address + 10 + n)

    def namespace(self, n: int) -> str:
        return f"pynh-{self.suffix}-{n}"

    def veth(self, n: int) -> str:
        """The root end of host n's link."""
        return f"pynv-{self.suffix}-{n}"

    def _make(self) -> None:
        prefix = self.subnet.prefixlen
        ip("link", "add", self.bridge, "type", "bridge")
        self.made_bridge = True
        ip("addr", "add", f"{self.server_address}/{prefix}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for n in range(self.hosts):
            ns = self.namespace(n)
            ip("netns", "add", ns)
            self.namespaces.append(ns)
            ip("link", "add", self.veth(n), "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", self.veth(n), "master", self.bridge, "up")
            ip("-n", ns, "addr", "add", f"{self.address(n)}/{prefix}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def command(self, n: int, hostname: str, argv: Sequence[str]) -> list[str]:
        """The command line running `argv` inside host n under `hostname`. Every step execs
        the next, so the process started is `argv`'s own (its pid is the program's)."""
        return [
            "ip", "netns", "exec", self.namespace(n), "unshare", "--uts", "--",
            sys.executable, "-c", BECOME, hostname, *argv,
        ]  # fmt: skip

    def cut(self, n: int) -> None:
        """Take host n's link down: its packets to and from the bridge are dropped."""
        ip("link", "set", self.veth(n), "down")
        self.cut_hosts.add(n)

    def restore(self, n: int) -> None:
        """Bring host n's link back up."""
        ip("link", "set", self.veth(n), "up")
        self.cut_hosts.discard(n)

    def close(self) -> None:
        """Delete every namespace (with its veth pair) and the bridge; safe to call twice.
        Processes still inside a namespace keep it alive: stop them first."""
        while self.namespaces:
            ns = self.namespaces.pop()
            ip("netns", "del", ns, check=False)
        for n in range(self.hosts):
            # Gone with its namespace unless that could not be deleted.
            if ip("link", "show", self.veth(n), check=False).returncode == 0:
                ip("link", "del", self.veth(n), check=False)
        if self.made_bridge:
            ip("link", "del", self.bridge, check=False)
            self.made_bridge = False

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
