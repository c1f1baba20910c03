"""The broker of a batch-system cluster and how its jobs learn of it without leaking the password.

The Redis is the one given (``redis_url=``, else ``AETHERGRAPH_BROKER_URL``), or a private
:class:`~aethergraph.redis_server.RedisServer` started on this (login) node with a random
password, listening on an address the compute nodes reach: the address of ``host`` (default:
this host's name) or of the network ``interface`` (``"ib0"``, as in dask-jobqueue).

The URL with its password reaches the jobs through a file, never a command line or a
world-readable file: ``broker.env`` (mode 0600, in a folder of mode 0700 that the compute nodes
share with the login node, as home directories are) which the job script sources. Not through
the job's environment either: PBS shows a job's ``Variable_List`` to anyone running ``qstat -f``.
The file is removed when the cluster closes.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import secrets
import shlex
import socket
import struct
from pathlib import Path

from aethergraph.errors import ConfigurationError
from aethergraph.redis_server import RedisServer
from aethergraph.settings import check_broker_url, get_settings

log = logging.getLogger("aethergraph")

_SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def interface_address(interface: str) -> str:
    """The IPv4 address of network ``interface`` (Linux)."""
    names = [name for _, name in socket.if_nameindex()]
    if interface not in names:
        raise ConfigurationError(
            f"interface={interface!r} is not a network interface of this host; it has "
            f"{', '.join(names)}"
        )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(
                sock.fileno(), _SIOCGIFADDR, struct.pack("256s", interface.encode()[:15])
            )
        except OSError as exc:
            raise ConfigurationError(
                f"interface={interface!r} has no IPv4 address ({exc.strerror})"
            ) from None
    return socket.inet_ntoa(packed[20:24])


def listen_address(host: str | None, interface: str | None) -> str:
    """The IPv4 address a private Redis listens on: ``interface``'s, else ``host``'s."""
    if host is not None and interface is not None:
        raise ConfigurationError("give host= or interface=, not both")
    if interface is not None:
        return interface_address(interface)
    name = host or socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError as exc:
        raise ConfigurationError(f"host={name!r} does not resolve: {exc}") from None
    if ipaddress.ip_address(address).is_unspecified:
        raise ConfigurationError(
            f"host={name!r} is not an address the compute nodes can connect to; name this host "
            "or pass interface='ib0' (say)"
        )
    if ipaddress.ip_address(address).is_loopback and host is None:
        log.warning(
            "this host's name %r resolves to %s, a loopback address: only jobs on this very "
            "host reach the cluster's Redis; pass host= or interface= to listen elsewhere",
            name,
            address,
        )
    return address


class ClusterBroker:
    """A given Redis URL, or a private password-protected Redis on the login node."""

    def __init__(
        self,
        redis_url: str | None,
        *,
        host: str | None,
        interface: str | None,
        startup_timeout: float,
    ) -> None:
        given = redis_url if redis_url is not None else get_settings().broker_url
        try:
            self.given_url = check_broker_url(given)
        except ConfigurationError as exc:
            raise ConfigurationError(f"redis_url {exc}") from None
        if self.given_url is not None and (host is not None or interface is not None):
            raise ConfigurationError(
                "host= and interface= choose where a private Redis listens; with a redis_url "
                "(or AETHERGRAPH_BROKER_URL) none is started"
            )
        self._host = host
        self._interface = interface
        self._startup_timeout = startup_timeout
        self.server: RedisServer | None = None
        self.url = self.given_url or ""

    def start(self) -> str:
        """The broker URL, starting the private Redis if there is no given one."""
        if self.given_url is None and self.server is None:
            address = listen_address(self._host, self._interface)
            server = RedisServer(
                host=address,
                password=secrets.token_urlsafe(24),
                startup_timeout=self._startup_timeout,
            )
            self.server = server.start()
            self.url = server.url
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """``export NAME='value'`` lines in a new file of mode 0600 (created so, never widened)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# AetherGraph cluster: the workers' broker (keep private)\n")
        for name, value in values.items():
            out.write(f"export {name}={shlex.quote(value)}\n")


def private_directory(path: Path) -> Path:
    """Create ``path`` (and parents) and make it mode 0700: the env file's folder."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
