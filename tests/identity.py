"""A real OpenID Connect provider for the suite: oidc-provider (tests/oidc, installed by
tests/run.sh with ``npm ci``) run by Node on 127.0.0.1, with one confidential client and its
own development login and consent pages."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent / "oidc"
PROVIDER_SCRIPT = HERE / "provider.mjs"
START_SECONDS = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class IdentityProvider:
    """A running provider: its issuer, its one client, and the accounts its login page
    signs in (read again at every sign-in, so a test may change them while it runs)."""

    issuer: str
    client_id: str
    client_secret: str
    accounts_file: Path

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        """``{login: {"email", "email_verified", "name"}}`` (the login name is the subject):
        any other login name signs in ``{login}@unknown.example``, an address nobody knows."""
        self.accounts_file.write_text(json.dumps(accounts), encoding="utf-8")


@asynccontextmanager
async def identity_provider(
    folder: Path,
    *,
    client_id: str,
    client_secret: str,
    redirect_uris: list[str],
    accounts: dict[str, dict[str, Any]] | None = None,
    id_token_claims: bool = True,
) -> AsyncIterator[IdentityProvider]:
    """Start the provider and wait until its discovery document answers; stop it after
    (SIGTERM, then kill). ``id_token_claims=False``: the address is only at userinfo."""
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("Node and tests/oidc/node_modules are needed: run tests/run.sh")
    provider, config = await asyncio.to_thread(
        _prepare, folder, client_id, client_secret, redirect_uris, accounts, id_token_claims
    )
    log = await asyncio.to_thread((folder / "provider.log").open, "wb")
    process = await asyncio.create_subprocess_exec(
        node,
        str(PROVIDER_SCRIPT),
        str(config),
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NODE_ENV": "development"},
    )
    try:
        await _wait_for(provider.issuer, process, folder / "provider.log")
        yield provider
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


def _prepare(
    folder: Path,
    client_id: str,
    client_secret: str,
    redirect_uris: list[str],
    accounts: dict[str, dict[str, Any]] | None,
    id_token_claims: bool,
) -> tuple[IdentityProvider, Path]:
    """The provider's configuration file and its accounts, on a free port."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    provider = IdentityProvider(
        f"http://127.0.0.1:{port}", client_id, client_secret, folder / "accounts.json"
    )
    provider.set_accounts(accounts or {})
    config = folder / "provider.json"
    config.write_text(
        json.dumps(
            {
                "port": port,
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uris": redirect_uris,
                "accounts": str(provider.accounts_file),
                "id_token_claims": id_token_claims,
            }
        ),
        encoding="utf-8",
    )
    return provider, config


async def _wait_for(issuer: str, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                break
            try:
                answer = await http.get(f"{issuer}/.well-known/openid-configuration")
                if answer.status_code == 200 and answer.json().get("issuer") == issuer:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    said = (await asyncio.to_thread(log.read_text, encoding="utf-8", errors="replace"))[-2000:]
    raise RuntimeError(f"the identity provider did not start at {issuer}:\n{said}")
