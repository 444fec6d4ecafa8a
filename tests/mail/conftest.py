"""A real SMTP server for the mail tests: aiosmtpd on a free loopback port, in a thread of its
own, keeping every message it accepts (parsed) so that tests read what a person would get."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def to(self) -> str:
        return self.recipients[0]


class MailServer:
    """aiosmtpd, not started until ``start()`` (a test may want it down at first). The first
    ``refuse_first`` messages are answered 451 (try again later); ``reject`` holds addresses
    refused for good (550)."""

    def __init__(self, **smtp_kwargs: Any) -> None:
        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self.refused = 0
        self.refuse_first = 0
        self.reject: set[str] = set()
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self._smtp_kwargs = smtp_kwargs

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.reject:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        with self._lock:
            if self.refused < self.refuse_first:
                self.refused += 1
                return "451 4.3.0 try again later"
            raw = envelope.content
            assert isinstance(raw, bytes)
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), message)
            )
        return "250 OK"

    def start(self) -> None:
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, **self._smtp_kwargs
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [r.message for r in self.received if address in r.recipients]

    async def wait_for(self, count: int, seconds: float = 30.0) -> list[Received]:
        """The messages once there are at least ``count`` (polls; the server is a thread)."""
        for _ in range(int(seconds * 20)):
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(self.received)} messages, {count} expected")


@pytest.fixture
def smtp_down() -> Iterator[MailServer]:
    """A mail server on a port of its own, not yet listening: ``start()`` brings it up."""
    server = MailServer()
    yield server
    server.stop()


@pytest.fixture
async def smtp_server(smtp_down: MailServer) -> AsyncIterator[MailServer]:
    """A mail server up and accepting every message."""
    await asyncio.to_thread(smtp_down.start)
    yield smtp_down


class Credentials:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.user,
            self.password,
        )
        return AuthResult(success=ok, handled=False)  # a failure answers 535


@pytest.fixture
async def tls_smtp_server() -> AsyncIterator[tuple[MailServer, ssl.SSLContext]]:
    """A mail server that insists on STARTTLS and a login (user ``hyojunka``, password
    ``p@ss:word/日本``), with a certificate of a test CA; and a client context trusting it."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = MailServer(
        tls_context=server_context,
        require_starttls=True,
        auth_required=True,
        authenticator=Credentials("hyojunka", "p@ss:word/日本"),
    )
    await asyncio.to_thread(server.start)
    try:
        yield server, client_context
    finally:
        server.stop()


# The API in-process with its worker (tests/api/conftest.py), for the deliveries' answers.
from tests.api.conftest import api, mailbox, project  # noqa: E402, F401
