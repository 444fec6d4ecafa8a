"""The mail sender against a real SMTP server (aiosmtpd) and a real Maildir: what arrives is
what a person's mail reader shows, in Japanese, with the Message-ID the caller gave."""

from __future__ import annotations

import email
import email.policy
import mailbox
import ssl
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from runtime.mail import MailConfigError, MailError, MailSender, message_id, parse_smtp_url
from runtime.settings import Settings
from tests.mail.conftest import MailServer

SUBJECT = "【期限超過】千代田区 住民基本台帳: 推進体制の立ち上げ"
BODY = "山田 太郎 様\n\n推進体制の立ち上げの期限を過ぎています。\nhttps://hyojunka.example.lg.jp/projects/131016-resident_registry\n"
MID = "<131016-resident_registry.deadline/mail.7@hyojunka.example.lg.jp>"


def sender_for(url: str, tmp_path: Path, **kwargs: object) -> MailSender:
    settings = Settings(
        smtp_url=SecretStr(url),
        mail_from="標準化 移行管理 <noreply@hyojunka.example.lg.jp>",
        data_dir=tmp_path,
    )
    return MailSender.from_settings(settings, **kwargs)


def assert_readable(msg: EmailMessage) -> None:
    assert msg["Subject"] == SUBJECT
    assert msg["Message-ID"] == MID
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_content() == BODY
    assert parseaddr(str(msg["To"])) == ("山田 太郎", "taro@example.jp")
    assert parseaddr(str(msg["From"])) == ("標準化 移行管理", "noreply@hyojunka.example.lg.jp")
    assert parsedate_to_datetime(str(msg["Date"])).utcoffset() is not None
    assert msg["Auto-Submitted"] == "auto-generated"


async def test_send_japanese_message_to_smtp_server(
    smtp_server: MailServer, tmp_path: Path
) -> None:
    sender = sender_for(smtp_server.url, tmp_path)
    await sender.send("taro@example.jp", SUBJECT, BODY, MID, to_name="山田 太郎")

    [got] = await smtp_server.wait_for(1)
    assert got.sender == "noreply@hyojunka.example.lg.jp"
    assert got.recipients == ["taro@example.jp"]
    assert_readable(got.message)
    # Every header line is ASCII: the subject and names travel as RFC 2047 words.
    raw = got.message.as_bytes(policy=email.policy.SMTP)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and b"=?utf-8?" in head
    assert not (tmp_path / "mail").exists()  # sent, not written


async def test_send_without_smtp_url_writes_to_the_maildir(tmp_path: Path) -> None:
    sender = sender_for("", tmp_path)
    await sender.send("taro@example.jp", SUBJECT, BODY, MID, to_name="山田 太郎")
    await sender.send("hanako@example.jp", "二通目", "本文\n", "<second@hyojunka.example.lg.jp>")

    box = mailbox.Maildir(tmp_path / "mail", create=False)
    messages = [
        email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        for key in box.keys()
    ]
    assert len(messages) == 2
    [first] = [m for m in messages if m["Message-ID"] == MID]
    assert isinstance(first, EmailMessage)
    assert_readable(first)


async def test_mail_dir_setting_names_the_maildir(tmp_path: Path) -> None:
    sender = MailSender.from_settings(Settings(data_dir=tmp_path, mail_dir=tmp_path / "box"))
    await sender.send("taro@example.jp", SUBJECT, BODY, MID)
    assert len(mailbox.Maildir(tmp_path / "box", create=False)) == 1


async def test_starttls_and_login_with_percent_encoded_password(
    tls_smtp_server: tuple[MailServer, ssl.SSLContext], tmp_path: Path
) -> None:
    server, trust = tls_smtp_server
    password = "p%40ss%3Aword%2F%E6%97%A5%E6%9C%AC"  # p@ss:word/日本
    url = f"smtp+starttls://hyojunka:{password}@127.0.0.1:{server.port}"
    await sender_for(url, tmp_path, tls_context=trust).send(
        "taro@example.jp", SUBJECT, BODY, MID, to_name="山田 太郎"
    )
    [got] = await server.wait_for(1)
    assert_readable(got.message)

    wrong = f"smtp+starttls://hyojunka:wrong@127.0.0.1:{server.port}"
    with pytest.raises(MailError) as refused:
        await sender_for(wrong, tmp_path, tls_context=trust).send(
            "taro@example.jp", SUBJECT, BODY, MID
        )
    assert refused.value.code == 535 and refused.value.permanent
    # A server that insists on TLS is never spoken to in the clear.
    plain = f"smtp://hyojunka:{password}@127.0.0.1:{server.port}"
    with pytest.raises(MailError):
        await sender_for(plain, tmp_path).send("taro@example.jp", SUBJECT, BODY, MID)
    assert len(server.received) == 1


async def test_a_server_down_is_a_failure_to_retry_and_a_refused_mailbox_is_final(
    smtp_down: MailServer, tmp_path: Path
) -> None:
    sender = sender_for(smtp_down.url, tmp_path)
    with pytest.raises(MailError) as down:
        await sender.send("taro@example.jp", SUBJECT, BODY, MID)
    assert not down.value.permanent

    smtp_down.start()
    smtp_down.reject = {"gone@example.jp"}
    smtp_down.refuse_first = 1
    async with sender.session() as session:
        with pytest.raises(MailError) as later:
            await session.send("taro@example.jp", SUBJECT, BODY, MID)
        assert later.value.code == 451 and not later.value.permanent
        with pytest.raises(MailError) as gone:
            await session.send("gone@example.jp", SUBJECT, BODY, MID)
        assert gone.value.code == 550 and gone.value.permanent
        # The same session carries on after both.
        await session.send("taro@example.jp", SUBJECT, BODY, MID)
    assert [r.recipients for r in smtp_down.received] == [["taro@example.jp"]]


def test_smtp_urls() -> None:
    assert parse_smtp_url("") is None
    plain = parse_smtp_url("smtp://relay.example.lg.jp")
    assert plain is not None
    assert (plain.host, plain.port, plain.security, plain.username) == (
        "relay.example.lg.jp",
        25,
        "none",
        None,
    )
    tls = parse_smtp_url("smtps://user:pw@mail.example.jp")
    assert tls is not None and (tls.port, tls.security, tls.password) == (465, "tls", "pw")
    start = parse_smtp_url("smtp+starttls://u%40x:p%2Fw@mail.example.jp:2525")
    assert start is not None
    assert (start.port, start.security, start.username, start.password) == (
        2525,
        "starttls",
        "u@x",
        "p/w",
    )
    assert "pw" not in repr(tls)


@pytest.mark.parametrize(
    "url",
    [
        "http://u:s3cret@mail.example.jp",
        "smtp://u:s3cret@",
        "smtp://u:s3cret@mail.example.jp:notaport",
        "smtp://u:s3cret@mail.example.jp/inbox",
        "smtps://user@mail.example.jp",
        "mail.example.jp:25",
    ],
)
def test_a_malformed_smtp_url_is_refused_without_its_password(url: str, tmp_path: Path) -> None:
    with pytest.raises(MailConfigError, match="HYOJUNKA_SMTP_URL") as refused:
        sender_for(url, tmp_path)
    assert "s3cret" not in str(refused.value)


def test_message_ids_are_valid_and_stable() -> None:
    a = message_id("digest.131016.pm..2027061509.2.x/mail.12", "https://hyojunka.example.lg.jp")
    assert a == "<digest.131016.pm.-.2027061509.2.x/mail.12@hyojunka.example.lg.jp>"
    assert a == message_id(
        "digest.131016.pm..2027061509.2.x/mail.12", "https://hyojunka.example.lg.jp/"
    )
    assert message_id("a:b c", "http://127.0.0.1:8000") == "<a-b-c@127.0.0.1>"
    long = message_id("x" * 300, "http://h")
    assert len(long) < 100 and long != message_id("x" * 301, "http://h")
