"""Validation of notification channel configuration: refused at configuration, not at send."""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlparse

from workflows.model import Channel

CHANNEL_KINDS = ("webhook", "slack")


class ChannelError(ValueError):
    pass


def check_channel(channel_id: str, kind: str, url: str) -> None:
    if not channel_id:
        raise ChannelError("channel id must not be empty")
    if kind not in CHANNEL_KINDS:
        raise ChannelError(f"channel {channel_id}: kind must be one of {', '.join(CHANNEL_KINDS)}")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ChannelError(f"channel {channel_id}: url must be an http(s) URL, got {url!r}")


def check_public_url(url: str) -> None:
    """A channel a local body configures over the API must not aim the worker at our own
    network: no loopback, private, link-local or reserved addresses, no bare host names."""
    host = (urlparse(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost") or "." not in host.strip("[]"):
        if ":" not in host:
            raise ChannelError(f"url host {host!r} is not a public address")
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not addr.is_global:
        raise ChannelError(f"url host {host} is not a public address")


def parse_channels(raw: str) -> list[Channel]:
    try:
        items = json.loads(raw or "[]")
    except json.JSONDecodeError as exc:
        raise ChannelError(f"channels is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise ChannelError("channels must be a JSON list")
    channels = []
    for item in items:
        if not isinstance(item, dict):
            raise ChannelError("each channel must be an object with id, kind and url")
        cid, kind, url = (
            str(item.get("id", "")),
            str(item.get("kind", "")),
            str(item.get("url", "")),
        )
        check_channel(cid, kind, url)
        channels.append(Channel(id=cid, kind=kind, url=url, lg_code=None))
    return channels
