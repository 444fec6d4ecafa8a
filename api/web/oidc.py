"""Sign-in through the body's or prefecture's own OpenID Connect provider.

Authorization code with PKCE, ``state`` and ``nonce`` (Authlib's Starlette client, from the
provider's discovery document); the ID token is verified against the provider's JWKS
(signature, issuer, audience, expiry, nonce). The person whose active account holds the
token's verified address is signed in, exactly as a token sign-in does: a page session row
and its cookie. Nobody is ever created by signing in; any other outcome is a Japanese 403
page and no session.

The flow's state, nonce and PKCE verifier wait in a short-lived signed cookie of their own
(Starlette's ``SessionMiddleware``, scoped to ``/login/oidc``), never in the page session.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Any

import httpx
import structlog
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import MismatchingStateError
from authlib.integrations.starlette_client import OAuth
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from joserfc.errors import JoseError
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.middleware.sessions import SessionMiddleware

from api.auth import caller_for_page
from api.people import PersonProblem, open_person_session, person_for_sign_in
from api.web import pages, signin
from runtime.settings import Settings

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

PROVIDER = "body"  # the one provider's name in Authlib's registry
FLOW_COOKIE = "hyojunka_oidc"
FLOW_SECONDS = 600  # from the provider's button to its callback
CALLBACK = "/login/oidc/callback"

REFUSED = "ログインできませんでした"
NO_ACCOUNT = "このメールアドレスのアカウントはありません。管理者に招待を依頼してください。"
UNVERIFIED = (
    "メールアドレスが確認されていません。"
    "認証サービス側でメールアドレスを確認してから、もう一度ログインしてください。"
)
NOT_COMPLETED = "認証サービスでのログインが完了しませんでした。もう一度ログインしてください。"
UNREACHABLE = "認証サービスに接続できませんでした。しばらく待ってからもう一度操作してください。"


def install(app: FastAPI, settings: Settings) -> None:
    """Offer the provider when ``settings.oidc_issuer`` names one: the flow's signed cookie
    and the client registered from the provider's discovery document. The routes are added
    in any case; without a provider they answer the Japanese 404 page."""
    app.state.oidc = None
    if settings.oidc_issuer:
        secret = settings.secret_key or secrets.token_urlsafe(32)  # development: this process
        app.add_middleware(
            SessionMiddleware,
            # A key of its own, derived: the flow's cookie can never pass for another one.
            secret_key=hashlib.sha256(b"hyojunka oidc flow\0" + secret.encode()).hexdigest(),
            session_cookie=FLOW_COOKIE,
            max_age=FLOW_SECONDS,
            path="/login/oidc",
            same_site="lax",  # sent on the provider's redirect back (a top-level GET)
            https_only=settings.public_url.startswith("https"),
        )
        oauth = OAuth()
        issuer = settings.oidc_issuer.rstrip("/")
        oauth.register(
            PROVIDER,
            server_metadata_url=f"{issuer}/.well-known/openid-configuration",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
        )
        app.state.oidc = oauth.create_client(PROVIDER)
    app.include_router(router)


def _refused(request: Request, text: str, status: int = 403) -> HTMLResponse:
    """The sign-in did not happen, said in Japanese, with the request id the log carries."""
    return pages.templates.TemplateResponse(
        request,
        "error.html",
        {
            "caller": None,
            "title": REFUSED if status == 403 else pages.ERROR_PAGE_JA[status][0],
            "text": text,
            "status": status,
            "request_id": request.scope.get("state", {}).get("request_id"),
        },
        status_code=status,
    )


def _redirect_uri(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + CALLBACK


@router.get("/login/oidc")
async def start(request: Request) -> Response:
    """To the provider's sign-in, with a fresh state, nonce and PKCE challenge."""
    client = request.app.state.oidc
    if client is None:
        return pages.not_found(request)
    settings: Settings = request.app.state.settings
    try:
        redirect: Response = await client.authorize_redirect(request, _redirect_uri(settings))
    except (httpx.HTTPError, AuthlibBaseError, ValueError) as exc:
        log.warning("identity provider unreachable", error=type(exc).__name__)
        return _refused(request, UNREACHABLE, 503)
    return redirect


def _verified(claims: dict[str, Any]) -> bool:
    value = claims.get("email_verified")
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _domain(email: str) -> str:
    """What the log says of an address: its domain only."""
    return email.rpartition("@")[2] or "-"


def _open_session(engine: Engine, email: str, hours: float) -> tuple[int, str, str] | None:
    """The active person holding ``email``, a new page session's secret and where they
    start; None when no active person holds it (nothing is written then)."""
    with Session(engine) as session:
        person = person_for_sign_in(session, email)
        if person is None or person.id is None:
            return None
        try:
            secret = open_person_session(session, person.id, hours)
        except PersonProblem:  # deactivated a moment ago
            return None
        return person.id, secret, pages._landing(caller_for_page(session, secret))


async def _claims(client: Any, token: dict[str, Any]) -> dict[str, Any] | None:
    """The verified ID token's claims, with the address from the userinfo endpoint when the
    provider keeps it out of the ID token (taken only for the same subject)."""
    claims = token.get("userinfo")  # Authlib's name for the verified ID token's claims
    if not claims:
        return None
    claims = dict(claims)
    if "email" not in claims:
        more = await client.userinfo(token=token)
        if more.get("sub") != claims.get("sub"):
            return None
        claims.update({k: more[k] for k in ("email", "email_verified", "name") if k in more})
    return claims


@router.get(CALLBACK)
async def callback(request: Request) -> Response:
    """The provider's answer: the code exchanged (with the PKCE verifier), the ID token
    verified, and the person of its verified address signed in."""
    client = request.app.state.oidc
    if client is None:
        return pages.not_found(request)
    settings: Settings = request.app.state.settings
    try:
        token = await client.authorize_access_token(request)
        claims = await _claims(client, token)
    except MismatchingStateError:
        log.warning("oidc sign-in refused", reason="state")
        return _refused(request, NOT_COMPLETED)
    except (AuthlibBaseError, JoseError) as exc:
        # The provider's own error (access_denied...), a code it would not exchange, or an ID
        # token that failed verification.
        log.warning(
            "oidc sign-in refused",
            reason="provider or token",
            error=getattr(exc, "error", None) or type(exc).__name__,
        )
        return _refused(request, NOT_COMPLETED)
    except httpx.HTTPError as exc:
        log.warning("identity provider unreachable", error=type(exc).__name__)
        return _refused(request, UNREACHABLE, 503)
    finally:
        request.session.clear()  # one flow, one use
    if claims is None:
        log.warning("oidc sign-in refused", reason="no id token")
        return _refused(request, NOT_COMPLETED)
    email = claims.get("email")
    if not isinstance(email, str) or not email.strip():
        log.warning("oidc sign-in refused", reason="no email")
        return _refused(request, NO_ACCOUNT)
    if not _verified(claims):
        log.warning("oidc sign-in refused", reason="email not verified", domain=_domain(email))
        return _refused(request, UNVERIFIED)
    opened = await asyncio.to_thread(
        _open_session, request.app.state.engine, email, settings.page_session_hours
    )
    if opened is None:
        log.warning("oidc sign-in refused", reason="no active person", domain=_domain(email))
        return _refused(request, NO_ACCOUNT)
    person_id, secret, landing = opened
    log.info("oidc sign-in", person_id=person_id)
    # A page that moves on to the landing page, not a redirect: the session's cookie is
    # SameSite=Strict, and a browser sends none on a redirect chain begun at the provider.
    return signin.signed_in_page(request, secret, settings, landing)
