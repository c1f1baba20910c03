"""broker/sentinel.conf for real: a master configured from broker/redis.conf and users.acl and a
``redis-server --sentinel`` started from a copy of sentinel.conf.

The copy changes only what a test machine must: the monitored address (the private master's
free port; quorum 1, as there is one Sentinel), the Sentinel's port, bind address and data
directory. The master runs broker/redis.conf with its plaintext port on and TLS off, as
sentinel.conf says a Sentinel deployment does. The Sentinel logs in to the master as the
``ag-sentinel`` ACL user: the test waits until the Sentinel reports the master's role (its INFO
and PINGs passed the ACL), checks ``SENTINEL get-master-addr-by-name`` and that the master's ACL
LOG holds no denial, then reaches the master through the Sentinel the way workers do
(``sentinel://`` with the ag-worker user).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import redis
from ops_support import PASSWORDS, REPO, RedisProcess, free_port, override, wait_until

from aethergraph.redis_clients import sync_client

MASTER = "aethergraph"


def test_sentinel_monitors_the_master_as_its_acl_user(tmp_dir: Path) -> None:
    admin_password = uuid.uuid4().hex
    acl = tmp_dir / "users.acl"
    acl.write_text(
        (REPO / "broker" / "users.acl").read_text()
        + f"user ag-test-admin on >{admin_password} ~* &* +@all\n"
    )
    master_port, sentinel_port = free_port(), free_port()
    (tmp_dir / "master").mkdir()
    master_conf = tmp_dir / "redis.conf"
    master_conf.write_text(
        override(
            (REPO / "broker" / "redis.conf").read_text(),
            bind="127.0.0.1",
            port=str(master_port),
            tls_port="0",
            tls_replication="no",
            dir=str(tmp_dir / "master"),
            aclfile=str(acl),
        )
    )
    text = (REPO / "broker" / "sentinel.conf").read_text()
    text, n = re.subn(
        rf"^sentinel monitor {MASTER} \S+ \d+ \d+$",
        f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 1",
        text,
        flags=re.M,
    )
    assert n == 1, "sentinel.conf monitors no master named aethergraph"
    (tmp_dir / "sentinel").mkdir()
    sentinel_conf = tmp_dir / "sentinel.conf"  # Sentinel rewrites its config: a copy
    sentinel_conf.write_text(
        override(text, port=str(sentinel_port), bind="127.0.0.1", dir=str(tmp_dir / "sentinel"))
    )
    master = RedisProcess(master_conf, log=tmp_dir / "master.log")
    sentinel = None
    admin = redis.Redis(
        port=master_port, username="ag-test-admin", password=admin_password, socket_timeout=5
    )
    probe = redis.Redis(port=sentinel_port, socket_timeout=5)
    try:
        master.wait_ready(admin, "the master")
        sentinel = RedisProcess(sentinel_conf, "--sentinel", log=tmp_dir / "sentinel.log")
        sentinel.wait_ready(probe, "the Sentinel")

        def role_reported() -> bool:
            info = probe.execute_command("SENTINEL", "MASTER", MASTER)
            fields = (
                dict(zip(info[::2], info[1::2], strict=True)) if isinstance(info, list) else info
            )
            fields = {_text(k): _text(v) for k, v in fields.items()}
            return fields.get("flags") == "master" and fields.get("role-reported") == "master"

        wait_until(role_reported, "the Sentinel to log in to the master and read its role")
        address = probe.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        assert [_text(a) for a in address] == ["127.0.0.1", str(master_port)]
        assert admin.acl_log() == [], "the master refused something the Sentinel needs"
        url = (
            f"sentinel://ag-worker:{PASSWORDS['ag-worker']}@127.0.0.1:{sentinel_port}/0"
            f"?master_name={MASTER}"
        )
        through = sync_client(url, socket_timeout=5)
        try:
            through.set("ag:kv:via-sentinel", "1")
            assert admin.get("ag:kv:via-sentinel") == b"1"
        finally:
            through.close()
    finally:
        probe.close()
        admin.close()
        if sentinel is not None:
            sentinel.stop()
        master.stop()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
