"""Signing the command line in through SSO (`archive-hub login`), so what it registers carries a vouched-for name.

Once ARCHIVE_HUB_OIDC_ISSUER is set, every command that registers a use (查阅, 复制, 借阅) or a destruction step
records the user signed in at Keycloak instead of the operating-system account or ARCHIVE_HUB_USER, which
anyone can set. `login` uses the OAuth device flow (RFC 8628: open a URL, enter a code, sign in there, with
whatever the company's Keycloak asks, 2FA included); `--username` with a password on stdin is for the
loopback dev server and scripts. The tokens are kept in a file only the user can read
(ARCHIVE_HUB_TOKEN_FILE, default ~/.cache/archive-hub/login-<issuer hash>.json); an expired access token is
renewed with the refresh token; `logout` ends the Keycloak session and deletes the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sso.oidc import Identity, InvalidToken, IssuerUnreachable, OidcSettings, TokenVerifier

CLI_CLIENT = "archive-hub-cli"
EARLY_S = 30  # renew an access token this long before it expires


class NotSignedIn(Exception):
    """No usable SSO login: the message says how to sign in."""


@dataclass(frozen=True)
class LoginSettings:
    oidc: OidcSettings
    client_id: str = CLI_CLIENT

    @classmethod
    def from_env(cls) -> LoginSettings | None:
        """None when SSO is not configured (ARCHIVE_HUB_OIDC_ISSUER unset)."""
        issuer = os.environ.get("ARCHIVE_HUB_OIDC_ISSUER")
        if not issuer:
            return None
        audience = os.environ.get("ARCHIVE_HUB_OIDC_AUDIENCE") or "archive-hub-api"
        oidc = OidcSettings(issuer, audience)
        try:
            oidc.realm  # noqa: B018  (validates the URL's shape now, not at the first request)
        except ValueError as exc:
            raise NotSignedIn(f"ARCHIVE_HUB_OIDC_ISSUER: {exc}") from None
        return cls(oidc, os.environ.get("ARCHIVE_HUB_OIDC_CLI_CLIENT") or CLI_CLIENT)

    @property
    def token_file(self) -> Path:
        if path := os.environ.get("ARCHIVE_HUB_TOKEN_FILE"):
            return Path(path)
        tag = hashlib.sha256(self.oidc.issuer.encode()).hexdigest()[:12]
        return Path.home() / ".cache" / "archive-hub" / f"login-{tag}.json"

    def client(self) -> Any:
        from keycloak import KeycloakOpenID

        return KeycloakOpenID(
            server_url=self.oidc.server_url, realm_name=self.oidc.realm, client_id=self.client_id
        )


@contextlib.contextmanager
def _locked(settings: LoginSettings) -> Iterator[None]:
    """One process at a time reads, renews and writes the login (parallel commands renew at the same moment;
    with refresh-token rotation only one renewal may win)."""
    import fcntl

    path = settings.token_file
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _save(settings: LoginSettings, tokens: dict[str, Any]) -> None:
    now = time.time()
    stored = {
        "issuer": settings.oidc.issuer,
        "access_token": tokens["access_token"],
        "refresh_token": tokens.get("refresh_token"),
        "expires_at": now + float(tokens.get("expires_in", 60)),
        "refresh_expires_at": now + float(tokens.get("refresh_expires_in", 0) or 0),
    }
    path = settings.token_file
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 600, a name of its own
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(stored, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _error(exc: Exception) -> tuple[str, str]:
    """Keycloak's OAuth error code and its words, never the request that carried a password."""
    body = getattr(exc, "response_body", b"") or b""
    try:
        data = json.loads(body)
        code = str(data.get("error") or "")
        return code, str(data.get("error_description") or code or type(exc).__name__)
    except (ValueError, TypeError, AttributeError):
        return "", type(exc).__name__


def _failure(exc: Exception) -> str:
    return _error(exc)[1]


def _accepted(settings: LoginSettings, tokens: dict[str, Any]) -> Identity:
    """The tokens kept only once the access token passes the same checks every later use makes."""
    try:
        who = TokenVerifier(settings.oidc).verify(tokens["access_token"])
    except (InvalidToken, IssuerUnreachable) as exc:
        raise NotSignedIn(f"the token from {settings.oidc.issuer} is not accepted: {exc}") from None
    with _locked(settings):
        _save(settings, tokens)
    return who


def password_login(settings: LoginSettings, username: str, password: str) -> Identity:
    try:
        tokens = settings.client().token(username, password)
    except Exception as exc:
        raise NotSignedIn(
            f"{settings.oidc.issuer} refused the sign-in of {username}: {_failure(exc)}"
        ) from None
    return _accepted(settings, tokens)


def device_login(
    settings: LoginSettings, show: Callable[[str, str], None], timeout_s: float = 600
) -> Identity:
    """RFC 8628: `show(url, user_code)` tells the user where to go; then the token endpoint is polled."""
    client = settings.client()
    try:
        grant = client.device()
    except Exception as exc:
        raise NotSignedIn(f"{settings.oidc.issuer} refused a device sign-in: {_failure(exc)}") from None
    show(grant.get("verification_uri_complete") or grant["verification_uri"], grant["user_code"])
    interval = float(grant.get("interval", 5))
    deadline = time.monotonic() + min(timeout_s, float(grant.get("expires_in", timeout_s)))
    while time.monotonic() < deadline:
        time.sleep(interval)
        try:
            tokens = client.token(
                grant_type="urn:ietf:params:oauth:grant-type:device_code", device_code=grant["device_code"]
            )
        except Exception as exc:
            code, reason = _error(exc)
            if code == "authorization_pending":
                continue
            if code == "slow_down":  # RFC 8628 §3.5
                interval += 5
                continue
            raise NotSignedIn(f"device sign-in at {settings.oidc.issuer} ended: {reason}") from None
        return _accepted(settings, tokens)
    raise NotSignedIn("device sign-in timed out: nobody confirmed the code")


def signed_in(settings: LoginSettings, verifier: TokenVerifier | None = None) -> Identity:
    """The identity of the stored login, renewed when its access token is (nearly) expired."""
    path = settings.token_file
    how = "sign in with `archive-hub login`"
    with _locked(settings):
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotSignedIn(f"not signed in to {settings.oidc.issuer}: {how}") from None
        except ValueError:
            raise NotSignedIn(f"{path} is not a login this tool wrote: {how}") from None
        if stored.get("issuer") != settings.oidc.issuer:
            raise NotSignedIn(f"signed in to {stored.get('issuer')}, not {settings.oidc.issuer}: {how}")
        if stored["expires_at"] - EARLY_S < time.time():
            if not stored.get("refresh_token") or stored["refresh_expires_at"] < time.time():
                raise NotSignedIn(f"the login to {settings.oidc.issuer} has expired: {how}")
            try:
                tokens = settings.client().refresh_token(stored["refresh_token"])
            except Exception as exc:
                raise NotSignedIn(f"the login could not be renewed ({_failure(exc)}): {how}") from None
            _save(settings, tokens)
            stored = {"access_token": tokens["access_token"]}
    try:
        return (verifier or TokenVerifier(settings.oidc)).verify(stored["access_token"])
    except (InvalidToken, IssuerUnreachable) as exc:
        raise NotSignedIn(f"the stored login is not accepted ({exc}): {how}") from None


def logout(settings: LoginSettings) -> bool:
    """Ends the Keycloak session (best effort) and deletes the stored tokens; False if there were none."""
    path = settings.token_file
    with _locked(settings):
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return False
        path.unlink(missing_ok=True)
    if stored.get("refresh_token"):
        # the file goes anyway: a session Keycloak cannot end now expires on its own
        with contextlib.suppress(Exception):
            settings.client().logout(stored["refresh_token"])
    return True
