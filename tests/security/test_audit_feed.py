"""The audit feed: the trail forwarded as RFC 5424 syslog to a collector over TCP and TLS, in chain order, resumed
after restarts, from one process per data folder (SQLite and PostgreSQL). The collectors are real sockets."""
from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from healthtwin.request import Caller, RequestContext
from healthtwin.security import audit_feed
from healthtwin.security.audit import AuditLog, rest_events
from healthtwin.security.audit_feed import CHAIN_EXTENSION, AuditFeed


class Collector:
    """A syslog receiver: accepts connections, splits octet-counted frames, keeps (PRI, AuditEvent)."""

    def __init__(self, context: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.context = context
        self.messages: list[tuple[int, dict]] = []
        self.connections: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.context is not None:
                try:
                    conn = self.context.wrap_socket(conn, server_side=True)
                except ssl.SSLError:  # a client that does not trust us hangs up in the handshake
                    conn.close()
                    continue
            self.connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b" " in buffer:
                length, _, rest = buffer.partition(b" ")
                if len(rest) < int(length):
                    break
                message, buffer = rest[:int(length)], rest[int(length):]
                pri = int(message[1:message.index(b">")])
                header_end = message.index(b" - ") + 3
                with self._lock:
                    self.messages.append((pri, orjson.loads(message[header_end:])))

    def wait_for(self, n: int, seconds: float = 10) -> list[tuple[int, dict]]:
        deadline = time.time() + seconds
        while time.time() < deadline and len(self.messages) < n:
            time.sleep(0.02)
        return list(self.messages)

    def close(self) -> None:
        self.server.close()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass


def chain(event: dict) -> dict[str, str]:
    ext = next(e for e in event["extension"] if e["url"] == CHAIN_EXTENSION)
    return {x["url"]: x["valueString"] for x in ext["extension"]}


def append(log: AuditLog, n: int, status: int = 200) -> None:
    ctx = RequestContext(Caller(subject="dr-a", kind="person"), "http://x/fhir")
    for i in range(n):
        log.append(rest_events(ctx, "read", status, "Observation", f"o{i}", ["Patient/p1"]))


@pytest.fixture
def log(store):
    log = AuditLog(store, durable=False)
    log.ensure_schema()
    return log


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def feed_to(store, port, folder, scheme="tcp", **kw) -> AuditFeed:
    feed = AuditFeed(store, f"{scheme}://127.0.0.1:{port}", folder, interval=0.05, **kw)
    feed.start()
    return feed


def test_entries_arrive_in_order_with_their_chain(store, log, collector, tmp_path):
    append(log, 4)
    append(log, 1, status=404)
    feed = feed_to(store, collector.port, tmp_path)
    try:
        got = collector.wait_for(5)
    finally:
        feed.stop()
    assert [e["id"] for _, e in got] == ["1", "2", "3", "4", "5"]
    rows = store.query("SELECT seq, prev_hash, hash FROM audit_log ORDER BY seq", [])
    assert [(int(chain(e)["seq"]), chain(e)["previous"], chain(e)["hash"]) for _, e in got] == \
        [(s, p, h) for s, p, h in rows]
    assert [pri for pri, _ in got] == [85, 85, 85, 85, 84]  # authpriv.notice; a refusal is a warning
    assert got[0][1]["resourceType"] == "AuditEvent" and got[0][1]["entity"][0]["what"]["reference"] == "Patient/p1"


def test_the_feed_resumes_after_a_restart_without_resending(store, log, collector, tmp_path):
    append(log, 3)
    feed = feed_to(store, collector.port, tmp_path)
    collector.wait_for(3)
    feed.stop()
    append(log, 2)
    feed = feed_to(store, collector.port, tmp_path)
    try:
        collector.wait_for(5)
        time.sleep(0.2)  # nothing more may come
    finally:
        feed.stop()
    assert [e["id"] for _, e in collector.messages] == ["1", "2", "3", "4", "5"]


def test_entries_wait_while_the_collector_is_down(store, log, tmp_path, monkeypatch):
    monkeypatch.setattr(audit_feed, "MAX_BACKOFF", 0.2)
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on this port yet
    append(log, 2)
    feed = AuditFeed(store, f"tcp://127.0.0.1:{port}", tmp_path, interval=0.05)
    feed.start()
    try:
        time.sleep(0.5)
        assert feed.cursor() == 0  # refused connections move nothing
        late = Collector(port=port)
        assert [e["id"] for _, e in late.wait_for(2)] == ["1", "2"]
        late.close()
    finally:
        feed.stop()


def test_a_restarted_collector_is_noticed_not_written_into(store, log, collector, tmp_path):
    append(log, 1)
    feed = feed_to(store, collector.port, tmp_path)
    try:
        collector.wait_for(1)
        for conn in collector.connections:  # the collector restarts: its end of the connection is gone
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        time.sleep(0.1)
        append(log, 1)
        got = collector.wait_for(2)
    finally:
        feed.stop()
    assert [e["id"] for _, e in got] == ["1", "2"]


def test_a_restarted_collector_is_noticed_by_a_process_holding_many_files(store, log, collector, tmp_path):
    """A server with many connections open gives the feed's socket a descriptor past 1024, where select()
    refuses to look: the feed must still notice the receiver's close and reconnect."""
    import os
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1200:
        pytest.skip(f"the open-files limit ({soft}) is below the 1,100 descriptors this test holds")
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        test_a_restarted_collector_is_noticed_not_written_into(store, log, collector, tmp_path)
        assert max(held) > 1024
    finally:
        for fd in held:
            os.close(fd)


def test_one_process_per_data_folder_forwards(store, log, collector, tmp_path):
    append(log, 3)
    first, second = feed_to(store, collector.port, tmp_path), feed_to(store, collector.port, tmp_path)
    try:
        collector.wait_for(3)
        time.sleep(0.3)
    finally:
        first.stop()
        second.stop()
    assert sorted([first.sent, second.sent]) == [0, 3]
    assert len(collector.messages) == 3


def test_over_tls_to_a_receiver_our_ca_signed(store, log, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soc.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address(
                "127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    collector = Collector(context)
    append(log, 2)
    feed = feed_to(store, collector.port, tmp_path, "tls", ca_file=str(tmp_path / "cert.pem"))
    try:
        assert [e["id"] for _, e in collector.wait_for(2)] == ["1", "2"]
    finally:
        feed.stop()
        collector.close()
    # without our CA the receiver is not trusted: nothing is sent and the cursor stays
    stranger = Collector(context)
    append(log, 1)
    feed = AuditFeed(store, f"tls://127.0.0.1:{stranger.port}", tmp_path / "other", interval=0.05)
    (tmp_path / "other").mkdir()
    feed.start()
    try:
        time.sleep(0.5)
        assert stranger.messages == [] and feed.cursor() == 0
    finally:
        feed.stop()
        stranger.close()


def test_bad_targets_are_refused():
    for bad in ("udp://h:514", "tcp://h", "syslog.example:514", "tls://:6514"):
        with pytest.raises(ValueError):
            audit_feed.parse_target(bad)


def test_the_server_forwards_what_it_audits(store, tmp_path, collector):
    from . import world as W
    from healthtwin.composition import create_app
    from healthtwin.security.keys import KeySet
    from healthtwin.security.tokens import TokenService
    from starlette.testclient import TestClient
    tokens = TokenService(KeySet.generate(), W.BASE, W.BASE + "/fhir")
    app = create_app(store, data_dir=tmp_path, public_url=W.BASE, tokens=tokens,
                     audit_feed=f"tcp://127.0.0.1:{collector.port}")
    world = W.World(tokens.keys, tokens)
    headers = world.mint("administrator", **W.ROLE_TOKENS["administrator"])
    with TestClient(app, base_url=W.BASE) as client:
        assert client.get("/fhir/Patient/nobody", headers=headers).status_code == 404
        got = collector.wait_for(1)
    assert got and got[-1][1]["subtype"][0]["code"] == "read" and got[-1][0] == 84


def test_an_altered_entry_is_forwarded_as_such_and_does_not_stop_the_feed(tmp_path, collector):
    """SQLite keeps whatever an UPDATE writes: an event turned into TEXT must reach the SOC as a serious
    failure, and the entries after it must follow."""
    import sqlite3

    from healthtwin.store.sqlite import SQLiteStore
    store = SQLiteStore(tmp_path / "t.sqlite")
    log = AuditLog(store, durable=False)
    log.ensure_schema()
    append(log, 3)
    con = sqlite3.connect(tmp_path / "t.sqlite")
    con.execute("UPDATE audit_log SET event = CAST(event AS TEXT), recorded = 'x', hash = X'01' WHERE seq = 2")
    con.commit()
    con.close()
    feed = feed_to(store, collector.port, tmp_path)
    try:
        got = collector.wait_for(3)
    finally:
        feed.stop()
        store.close()
    assert [e["id"] for _, e in got] == ["1", "2", "3"]
    pri, altered = got[1]
    assert pri == 83 and altered["outcome"] == "8" and "cannot be read" in altered["outcomeDesc"]
