"""Validation of notification channel configuration, refused at configuration; the worker
checks the address again when it sends (activities.outbound)."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import httpx

from readmodel.outbound import OutboundPolicy, RefusedAddress, numeric_host
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


def check_public_url(
    url: str, policy: OutboundPolicy | None = None, *, name_addresses: bool = True
) -> None:
    """A channel must not aim the worker at our own network: its host, in whatever notation,
    and every address its name resolves to now must be public or in the policy's allow-list.
    Blocking (it may resolve a name): call it from a thread. A name that does not resolve
    here is accepted; the worker checks the address again when it sends. Bare host names
    are refused: what they mean depends on the resolver's search domains.

    ``name_addresses``: whether a refusal may say what a name resolves to. The operator's
    own configuration may; an answer to a user of the API must not (it would map the
    internal network one name at a time)."""
    policy = policy or OutboundPolicy()
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ChannelError(f"url is not valid: {exc}") from exc
    host = parsed.host
    if not host:
        raise ChannelError("url has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        numeric = numeric_host(host)
        if numeric is None and "." not in host.rstrip("."):
            raise RefusedAddress(host, "a bare host name")
    except RefusedAddress as exc:
        raise ChannelError(f"url host {exc}") from exc
    try:
        policy.addresses_for(host, port)
    except RefusedAddress as exc:
        if numeric is not None or name_addresses:  # the address given, or the operator
            raise ChannelError(f"url host {exc}") from exc
        raise ChannelError(
            f"url host {host} is not a public address (it resolves to an address outside "
            "the public internet and the allowed ranges)"
        ) from None
    except (OSError, UnicodeError):
        return  # does not resolve here; the worker checks the address it sends to


def parse_channels(raw: str, policy: OutboundPolicy | None = None) -> list[Channel]:
    """The operator's channels, each checked as a body's channel is (resolving names)."""
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
        check_public_url(url, policy)
        channels.append(Channel(id=cid, kind=kind, url=url, lg_code=None))
    return channels
