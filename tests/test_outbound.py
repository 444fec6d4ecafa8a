"""Where notifications may go: every spelling of an internal address is refused when a
channel is configured, and again at send time on the address a name resolves to then, with
a real local receiver that must hear nothing unless its range is allowed."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from ipaddress import ip_address

import httpx
import pytest
import trustme
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notifications import NotificationActivities
from activities.outbound import guarded_client
from readmodel import outbound
from readmodel import tables as t
from readmodel.channels import ChannelError, check_public_url
from readmodel.outbound import OutboundPolicy, RefusedAddress, parse_allow
from runtime.settings import Settings
from tests.receiver import Receiver
from workflows.model import Channel, Delivery, Notification

# (host as written in a URL, the address it means, why it is refused or None if public)
ADDRESS_FORMS = [
    # IPv4 notations of loopback that inet_aton and getaddrinfo accept
    ("127.0.0.1", "127.0.0.1", "loopback"),
    ("127.1", "127.0.0.1", "loopback"),
    ("127.0.1", "127.0.0.1", "loopback"),
    ("0177.0.0.1", "127.0.0.1", "loopback"),
    ("0177.1", "127.0.0.1", "loopback"),
    ("0x7f.0.0.1", "127.0.0.1", "loopback"),
    ("0x7f.1", "127.0.0.1", "loopback"),
    ("0x7F000001", "127.0.0.1", "loopback"),
    ("017700000001", "127.0.0.1", "loopback"),
    ("2130706433", "127.0.0.1", "loopback"),
    ("127.0.0.1.", "127.0.0.1", "loopback"),
    ("127.255.255.254", "127.255.255.254", "loopback"),
    # private, short and mixed forms
    ("10.1", "10.0.0.1", "private"),
    ("10.0.0.1", "10.0.0.1", "private"),
    ("167772161", "10.0.0.1", "private"),
    ("0xa.0x0.0x0.0x1", "10.0.0.1", "private"),
    ("172.16.0.1", "172.16.0.1", "private"),
    ("172.31.255.255", "172.31.255.255", "private"),
    ("192.168.1.1", "192.168.1.1", "private"),
    ("0300.0250.1.1", "192.168.1.1", "private"),
    ("192.168.257", "192.168.1.1", "private"),
    # link-local (cloud metadata), CGNAT, unspecified, multicast, reserved, broadcast
    ("169.254.169.254", "169.254.169.254", "link-local"),
    ("0xa9fea9fe", "169.254.169.254", "link-local"),
    ("100.64.0.1", "100.64.0.1", "CGNAT"),
    ("100.127.255.254", "100.127.255.254", "CGNAT"),
    ("0.0.0.0", "0.0.0.0", "unspecified"),
    ("0", "0.0.0.0", "unspecified"),
    ("224.0.0.1", "224.0.0.1", "multicast"),
    ("239.255.255.250", "239.255.255.250", "multicast"),
    ("240.0.0.1", "240.0.0.1", "reserved"),
    ("255.255.255.255", "255.255.255.255", "reserved"),
    ("192.0.2.1", "192.0.2.1", "documentation"),
    ("198.18.0.1", "198.18.0.1", "benchmarking"),
    # IPv6 and IPv4 inside IPv6
    ("[::1]", "::1", "loopback"),
    ("[::]", "::", "unspecified"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1", "loopback"),
    ("[::ffff:7f00:1]", "::ffff:127.0.0.1", "loopback"),
    ("[::ffff:10.0.0.1]", "::ffff:10.0.0.1", "private"),
    ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254", "link-local"),
    ("[::127.0.0.1]", "::127.0.0.1", "IPv4-compatible"),
    ("[::10.0.0.1]", "::10.0.0.1", "IPv4-compatible"),
    ("[2002:7f00:1::]", "2002:7f00:1::", "loopback"),
    ("[2002:a00:1::1]", "2002:a00:1::1", "private"),
    ("[64:ff9b::127.0.0.1]", "64:ff9b::7f00:1", "loopback"),
    ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe", "link-local"),
    ("[64:ff9b:1::a00:1]", "64:ff9b:1::a00:1", "local-use NAT64"),
    ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("[fc00::1]", "fc00::1", "unique local"),
    ("[fd12:3456::1]", "fd12:3456::1", "unique local"),
    ("[fe80::1]", "fe80::1", "link-local"),
    ("[fec0::1]", "fec0::1", "site-local"),
    ("[ff02::1]", "ff02::1", "multicast"),
    ("[2001:db8::1]", "2001:db8::1", "documentation"),
    ("[100::1]", "100::1", "discard"),
    # public addresses, in several notations, pass
    ("8.8.8.8", "8.8.8.8", None),
    ("134744072", "8.8.8.8", None),
    ("0x8.0x8.0x8.0x8", "8.8.8.8", None),
    ("8.8.2056", "8.8.8.8", None),
    ("100.128.0.1", "100.128.0.1", None),
    ("172.32.0.1", "172.32.0.1", None),
    ("[2001:4860:4860::8888]", "2001:4860:4860::8888", None),
    ("[::ffff:8.8.8.8]", "::ffff:8.8.8.8", None),
    ("[64:ff9b::8.8.8.8]", "64:ff9b::808:808", None),
]


@pytest.mark.parametrize(("host", "means", "refused"), ADDRESS_FORMS)
def test_every_spelling_of_an_address_is_judged_as_that_address(
    host: str, means: str, refused: str | None
) -> None:
    assert outbound.numeric_host(host) == ip_address(means)
    policy = OutboundPolicy()
    if refused is None:
        assert policy.addresses_for(host, 443) == [ip_address(means)]
    else:
        with pytest.raises(RefusedAddress, match=refused):
            policy.addresses_for(host, 443)


@pytest.mark.parametrize(
    ("host", "means", "refused"),
    [f for f in ADDRESS_FORMS if f[2] is not None],
)
def test_a_channel_url_on_any_internal_address_is_refused(
    host: str, means: str, refused: str
) -> None:
    # (Four-part forms with leading zeros, 0177.0.0.1, are already invalid URLs to httpx.)
    with pytest.raises(ChannelError, match="not a public address|Invalid IPv4"):
        check_public_url(f"https://{host}:8443/hook")


def test_urls_that_are_not_valid_or_bare_names_are_refused() -> None:
    for url in (
        "http://1.2.3.4.5/",
        "http://127.0.0.08/",
        "http://0x100.0.0.1/",
        "http://localhost/",
        "http://intranet/",
        "http://redis./",
    ):
        with pytest.raises(ChannelError):
            check_public_url(url)


def test_every_address_a_name_resolves_to_must_be_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {
        "hooks.example.lg.jp": ["203.0.114.10", "2001:4860::1"],
        "mixed.example.lg.jp": ["8.8.8.8", "10.0.0.5"],
        "svc.cluster.example": ["10.96.0.10"],
    }
    monkeypatch.setattr(
        outbound, "resolve", lambda host, port: [ip_address(a) for a in answers[host]]
    )
    check_public_url("https://hooks.example.lg.jp/x")
    for host in ("mixed.example.lg.jp", "svc.cluster.example"):
        with pytest.raises(ChannelError, match="10\\.") as raised:
            check_public_url(f"https://{host}/x")
        assert "private" in str(raised.value)
    # A name that does not resolve here is left to the check at send time.
    monkeypatch.setattr(outbound, "resolve", _unresolvable)
    check_public_url("https://not-yet.example.lg.jp/x")


def _unresolvable(host: str, port: int) -> list[object]:
    raise OSError("name does not resolve")


def test_allowed_ranges_pass_and_only_those() -> None:
    policy = OutboundPolicy(parse_allow("10.20.0.0/16, 127.0.0.0/8,fd00:1::/32"))
    for host in ("10.20.3.4", "10.20.1", "127.1", "[::ffff:10.20.0.9]", "[fd00:1::5]"):
        check_public_url(f"http://{host}/hook", policy)
    for host in ("10.21.0.1", "192.168.0.1", "[::1]", "[fd00:2::5]", "169.254.169.254"):
        with pytest.raises(ChannelError):
            check_public_url(f"http://{host}/hook", policy)
    with pytest.raises(ValueError, match="allow-list"):
        parse_allow("10.20.0.0/33")


def test_operator_channels_are_checked_against_the_allow_list() -> None:
    local = json.dumps([{"id": "ops", "kind": "webhook", "url": "http://0x7f.1:9000/hook"}])
    with pytest.raises(ValidationError, match="not a public address"):
        Settings(channels=local)
    assert Settings(channels=local, outbound_allow="127.0.0.0/8").channels == local
    with pytest.raises(ValidationError):
        Settings(outbound_allow="not-a-cidr")


# --- at send time, through the real client, to a real server --------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=0) as r:
        yield r


def _port(receiver: Receiver) -> int:
    return int(receiver.server.server_address[1])


async def test_a_name_that_resolves_to_loopback_at_send_time_is_not_contacted(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Public when the channel was configured; rebound to loopback when it is used.
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [ip_address("93.184.216.34")])
    url = f"http://hooks.example.lg.jp:{_port(receiver)}/hook"
    check_public_url(url)
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [ip_address("127.0.0.1")])
    async with guarded_client(OutboundPolicy(), timeout=5) as http:
        with pytest.raises(RefusedAddress, match="loopback"):
            await http.post(url, json={"x": 1})
        # The real resolver's idea of localhost, and numeric spellings, fare no better.
        for host in ("localhost", "127.1", "2130706433", "0x7f.0.0.1", "[::ffff:127.0.0.1]"):
            with pytest.raises(RefusedAddress):
                await http.post(f"http://{host}:{_port(receiver)}/hook", json={"x": 1})
    assert receiver.calls == []


async def test_an_allow_listed_private_address_is_delivered_to(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [ip_address("127.0.0.1")])
    policy = OutboundPolicy(parse_allow("127.0.0.0/8"))
    async with guarded_client(policy, timeout=5) as http:
        by_name = await http.post(f"http://hooks.lgwan.example:{_port(receiver)}/a", json={})
        by_short_form = await http.post(f"http://127.1:{_port(receiver)}/b", json={})
    assert by_name.status_code == by_short_form.status_code == 200
    assert [(c["path"], c["host"]) for c in receiver.calls] == [
        ("/a", f"hooks.lgwan.example:{_port(receiver)}"),  # the name, not the address
        ("/b", f"127.1:{_port(receiver)}"),
    ]


async def test_tls_is_verified_for_the_host_name_while_connecting_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.lgwan.example").configure_cert(server_tls)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    hosts: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            hosts.append(self.headers.get("Host"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    Thread(target=server.serve_forever, daemon=True).start()
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [ip_address("127.0.0.1")])
    policy = OutboundPolicy(parse_allow("127.0.0.0/8"))
    try:
        async with guarded_client(policy, verify=client_tls, timeout=5) as http:
            ok = await http.post(f"https://hooks.lgwan.example:{port}/hook", json={})
            # Same address, a name the certificate does not carry: verification fails.
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.post(f"https://other.lgwan.example:{port}/hook", json={})
    finally:
        server.shutdown()
        server.server_close()
    assert ok.status_code == 200
    assert hosts == [f"hooks.lgwan.example:{port}"]
    assert names[:2] == ["hooks.lgwan.example", "other.lgwan.example"]


async def test_redirects_are_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", "/internal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        policy = OutboundPolicy(parse_allow("127.0.0.0/8"))
        async with guarded_client(policy, timeout=5) as http:
            resp = await http.post(f"http://127.0.0.1:{server.server_address[1]}/hook")
    finally:
        server.shutdown()
        server.server_close()
    assert resp.status_code == 307 and hits == ["/hook"]


async def test_a_refused_delivery_is_recorded_failed_and_not_retried(
    engine: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [ip_address("127.0.0.1")])
    note = Notification(
        id="n1",
        kind="escalation.reminder",
        project_id="131016-resident_registry",
        lg_code="131016",
        prefecture="13",
        vendor_id=None,
        audience=["pm"],
        subject="s",
        text="t",
        data={},
    )
    channel = Channel(
        id="hook",
        kind="webhook",
        url=f"http://hooks.example.lg.jp:{_port(receiver)}/",
        lg_code=None,
    )
    async with guarded_client(OutboundPolicy(), timeout=5) as http:
        # An operator's channel: its address is looked up from the configuration as it sends.
        activities = NotificationActivities(
            engine, http, [channel], "https://hyojunka.example.lg.jp"
        )
        with pytest.raises(ApplicationError) as raised:
            await ActivityEnvironment().run(
                activities.deliver_notification, Delivery("n1/hook", channel, note)
            )
    assert raised.value.non_retryable
    assert receiver.calls == []
    with Session(engine) as session:
        [attempt] = session.exec(select(t.DeliveryAttempt)).all()
    assert attempt.outcome == "failed" and attempt.status_code is None
    assert attempt.error is not None and attempt.error.startswith("refused")


def test_the_client_ignores_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    client = guarded_client(OutboundPolicy())
    assert not client._mounts and not client.follow_redirects
    assert isinstance(client._transport, httpx.AsyncHTTPTransport)
