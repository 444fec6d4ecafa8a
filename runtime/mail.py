"""Mail to people: notices, the daily round-up, invitations and sign-in links.

One sender for every process, built from the settings: plain-text UTF-8 messages sent to the
operator's SMTP server with aiosmtplib (``HYOJUNKA_SMTP_URL``), or, with no server set, written
to a Maildir (``HYOJUNKA_MAIL_DIR``, default ``data_dir/mail``) that any mail reader opens, so
that a development install shows what it would have sent. The SMTP server is the operator's own
configuration: the webhook address guard (readmodel/outbound.py) does not apply to it.

A message carries the Message-ID its caller gives: a delivery retried sends the same id, so a
mail reader (or a person) can tell a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import mailbox
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import aiosmtplib

from workflows.calendar import JST

if TYPE_CHECKING:
    from runtime.settings import Settings

# The notification channel of mail to a notice's audience: a channel id of its own, which no
# webhook channel may take (deliveries are named {notification id}/{channel id}).
MAIL_CHANNEL_ID = "mail"
SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
# Seconds an SMTP operation (connect, each command) may take before it counts as failed.
SMTP_TIMEOUT = 10.0


class MailConfigError(ValueError):
    """HYOJUNKA_SMTP_URL cannot be read. The message never repeats the password."""


class MailError(Exception):
    """A message did not go. ``permanent`` when the server refused it for good (a 5xx reply:
    no such mailbox, policy), so sending it again cannot help; otherwise (server down, a
    timeout, a 4xx reply) a later attempt may succeed."""

    def __init__(self, reason: str, *, code: int | None = None, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.permanent = permanent


@dataclass(frozen=True)
class SmtpServer:
    """Where mail goes, read from HYOJUNKA_SMTP_URL."""

    host: str
    port: int
    security: str  # "none" | "starttls" | "tls"
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never the password, even in a traceback's locals
        return f"SmtpServer({self.security}://{self.host}:{self.port}, user={self.username!r})"


def parse_smtp_url(url: str) -> SmtpServer | None:
    """``smtp://host[:port]``, ``smtp+starttls://user:password@host[:587]`` or
    ``smtps://user:password@host[:465]``; an empty URL is None (mail goes to the Maildir).
    User and password are percent-decoded, so a password may hold any character."""
    url = url.strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # urllib's message may quote the URL, password and all: say what is wrong instead.
        raise MailConfigError(
            "HYOJUNKA_SMTP_URL is malformed: check its host and its port (a number, 0-65535)"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise MailConfigError(
            f"HYOJUNKA_SMTP_URL: unknown scheme {scheme!r}; use smtp://, smtp+starttls:// "
            "or smtps://"
        )
    if not parts.hostname:
        raise MailConfigError("HYOJUNKA_SMTP_URL names no host (smtp://host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MailConfigError("HYOJUNKA_SMTP_URL takes only user, password, host and port")
    if (parts.username is None) != (parts.password is None):
        raise MailConfigError("HYOJUNKA_SMTP_URL: give user and password together, or neither")
    security = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "tls"}[scheme]
    return SmtpServer(
        host=parts.hostname,
        port=port or SCHEMES[scheme],
        security=security,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")


def message_id(local: str, public_url: str) -> str:
    """A Message-ID ``<local@host>`` whose left part is ``local`` made valid (characters a
    Message-ID may not hold become '-', no empty dot-separated part), the host being
    public_url's. Distinct locals stay distinct; a very long one is replaced by its hash."""
    left = _NOT_ATEXT.sub("-", local)
    while ".." in left:
        left = left.replace("..", ".-.")
    left = left.strip(".") or "-"
    if len(left) > 200:
        left = sha256(local.encode()).hexdigest()
    host = urlsplit(public_url).hostname or "hyojunka.localhost"
    return f"<{left}@{_NOT_ATEXT.sub('-', host)}>"


class MailSender:
    """Builds and sends plain-text UTF-8 messages; one per process, shared by its users.

    ``session()`` keeps one SMTP connection for many messages (a notice to several people,
    the daily round-up); ``send`` is one message on a connection of its own."""

    def __init__(
        self,
        mail_from: str,
        server: SmtpServer | None,
        maildir: Path,
        *,
        timeout: float = SMTP_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.mail_from = mail_from
        self.envelope_from = parseaddr(mail_from)[1] or mail_from
        self.server = server
        self.maildir = maildir
        self.timeout = timeout
        self.tls_context = tls_context

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> MailSender:
        server = parse_smtp_url(settings.smtp_url.get_secret_value())
        maildir = settings.mail_dir or settings.data_dir / "mail"
        return cls(settings.mail_from, server, maildir, **kwargs)  # type: ignore[arg-type]

    @property
    def destination(self) -> str:
        """Where messages go, for logs (never the password)."""
        if self.server is None:
            return f"maildir:{self.maildir}"
        scheme = {"none": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}
        return f"{scheme[self.server.security]}://{self.server.host}:{self.server.port}"

    def message(
        self, to: str, subject: str, body: str, message_id: str, to_name: str | None = None
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.mail_from
        msg["To"] = Address(display_name=to_name or "", addr_spec=to)
        msg["Subject"] = subject  # encoded as RFC 2047 words when it is not ASCII
        msg["Date"] = format_datetime(datetime.now(JST))
        msg["Message-ID"] = message_id
        # Sent by a program: vacation responders and the like do not answer it (RFC 3834).
        msg["Auto-Submitted"] = "auto-generated"
        # Base64 passes any relay, 8BITMIME or not.
        msg.set_content(body, charset="utf-8", cte="base64")
        return msg

    async def send(
        self, to: str, subject: str, body: str, message_id: str, to_name: str | None = None
    ) -> None:
        """Send one message; raises MailError when it did not go."""
        async with self.session() as session:
            await session.send(to, subject, body, message_id, to_name)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[MailSession]:
        session = MailSession(self)
        try:
            yield session
        finally:
            await session.close()


class MailSession:
    """Messages over one SMTP connection, opened at the first message and opened again after
    a failure; or into the Maildir."""

    def __init__(self, sender: MailSender) -> None:
        self._sender = sender
        self._smtp: aiosmtplib.SMTP | None = None

    async def send(
        self, to: str, subject: str, body: str, message_id: str, to_name: str | None = None
    ) -> None:
        s = self._sender
        try:
            msg = s.message(to, subject, body, message_id, to_name)
        except (ValueError, HeaderParseError):
            # An address or a name no message can carry: no retry will help, and the reason
            # must not quote the address (it would end up in a workflow's history).
            reason = "the address or name cannot be written in a message"
            raise MailError(reason, permanent=True) from None
        if s.server is None:
            await asyncio.to_thread(_into_maildir, s.maildir, msg)
            return
        try:
            smtp = await self._connected(s.server)
            await smtp.send_message(msg, sender=s.envelope_from, recipients=[to])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            code = codes[0] if codes else None
            await self.close()
            raise MailError(
                f"recipient refused ({code})", code=code, permanent=_permanent(code)
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            await self.close()
            raise MailError(
                f"SMTP {exc.code}", code=exc.code, permanent=_permanent(exc.code)
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            raise MailError(type(exc).__name__) from exc

    async def _connected(self, server: SmtpServer) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        s = self._sender
        smtp = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            timeout=s.timeout,
            use_tls=server.security == "tls",
            # Plain smtp:// stays plain (a local relay); smtp+starttls:// insists on TLS.
            start_tls=server.security == "starttls",
            tls_context=s.tls_context,
        )
        await smtp.connect()
        try:
            if server.username is not None and server.password is not None:
                await smtp.login(server.username, server.password)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            smtp.close()


def _permanent(code: int | None) -> bool:
    return code is not None and 500 <= code < 600


def _into_maildir(folder: Path, msg: EmailMessage) -> None:
    """Deliver into a Maildir (new/), made if missing; safe from several processes at once."""
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(folder, create=False).add(msg.as_bytes())
