"""The analyst page (starters/web, built by scripts/build_web.sh) served at /ui/ from the
API's own origin: its index with a strict Content-Security-Policy (scripts and styles
only from this origin, no inline code, no framing), its hashed assets, and the sign-in
settings it needs (/ui/config.json). The page holds no data of its own: it calls the
API's routes like any client, with the caller's token (dev mode: none)."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from stratmaster.settings import Settings

router = APIRouter(include_in_schema=False)

DEFAULT_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"
_ASSET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".woff2": "font/woff2",
          ".png": "image/png", ".ico": "image/x-icon", ".map": "application/json"}
NOT_BUILT = ("<!doctype html><html lang=en><title>StratMaster</title><h1>The page is not built</h1>"
             "<p>Run <code>bash scripts/build_web.sh</code> (npm, from the registry) and reload.</p></html>")


def dist_dir(settings: Settings) -> Path:
    return (settings.web_dist or DEFAULT_DIST).expanduser()


def keycloak_public_url(settings: Settings) -> str | None:
    return settings.web_keycloak_url or settings.keycloak_url


def content_security_policy(settings: Settings) -> str:
    """Everything from this origin only; in OIDC mode the page also talks to Keycloak's token
    endpoint (connect-src). No inline script or style, no eval, no framing, no plugins."""
    connect = ["'self'"]
    keycloak = keycloak_public_url(settings)
    if settings.auth_mode == "oidc" and keycloak:
        parts = urlsplit(keycloak)
        connect.append(f"{parts.scheme}://{parts.netloc}")
    return "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "font-src 'self'",
        f"connect-src {' '.join(connect)}", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
        "object-src 'none'", "manifest-src 'self'",
    ])


def _secured(response: Response, settings: Settings) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy(settings)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return response


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
async def ui_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
async def index(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    page = dist_dir(settings) / "index.html"
    if not page.is_file():
        return _secured(HTMLResponse(NOT_BUILT, status_code=503), settings)
    response = FileResponse(page, media_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-cache"
    return _secured(response, settings)


@router.get("/ui/config.json")
async def config(request: Request) -> Response:
    """How the page signs in: dev mode (no token), or Keycloak's authorization code flow with PKCE."""
    settings: Settings = request.app.state.settings
    keycloak = keycloak_public_url(settings)
    body = {"auth_mode": settings.auth_mode,
            "authority": f"{keycloak.rstrip('/')}/realms/{settings.keycloak_realm}" if keycloak else None,
            "client_id": settings.web_client_id}
    return _secured(JSONResponse(body, headers={"Cache-Control": "no-cache"}), settings)


@router.get("/ui/assets/{name}")
async def asset(name: str, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    path = dist_dir(settings) / "assets" / name
    if not _ASSET.fullmatch(name) or path.suffix not in _TYPES or not path.is_file():
        return _secured(Response(status_code=404), settings)
    response = FileResponse(path, media_type=_TYPES[path.suffix])
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"  # names carry a content hash
    return _secured(response, settings)
