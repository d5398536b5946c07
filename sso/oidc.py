"""Who is asking: an OpenID Connect access token from the company's Keycloak (统一身份认证), checked here.

The hub never sees a password. A user signs in at Keycloak (federated there to the company directory, LDAP or
AD) and presents the access token; `TokenVerifier` checks its RS256/ES256 signature against the realm's
published keys (fetched once and again only for a key id it does not know, so a key rotation needs no
restart), its issuer, that it was issued for this API (`aud`), and its lifetime. What comes out is an
`Identity`: the username the 利用登记 registers, the stable subject id, and the roles that decide what the user
may do. A token is never logged or echoed; a refusal says why in words, not with the token.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "ES256",
    "ES384",
]  # never "none", never HMAC with a public key
KEY_REFRESH_MIN_S = 30.0  # an unknown key id refetches the key set at most this often


class InvalidToken(Exception):
    """The token cannot be trusted: the message says why (expired, wrong issuer, bad signature, ...)."""


class IssuerUnreachable(Exception):
    """The identity provider's keys cannot be fetched; the message names the issuer."""


@dataclass(frozen=True)
class Identity:
    username: str
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    name: str = ""  # the person's name as the directory has it (the token's name claim); may be empty

    def has_any(self, roles: set[str] | frozenset[str]) -> bool:
        return bool(self.roles & roles)


@dataclass(frozen=True)
class OidcSettings:
    """`issuer` is the realm URL exactly as tokens carry it (https://sso.example.com/realms/archive-hub);
    `audience` the client id tokens must be issued for."""

    issuer: str
    audience: str = "archive-hub-api"

    @property
    def server_url(self) -> str:
        return self.issuer.split("/realms/")[0] + "/"

    @property
    def realm(self) -> str:
        if "/realms/" not in self.issuer:
            raise ValueError(f"{self.issuer!r} is not a Keycloak realm URL (…/realms/<realm>)")
        return self.issuer.split("/realms/", 1)[1].strip("/")


class TokenVerifier:
    def __init__(self, settings: OidcSettings) -> None:
        from keycloak import KeycloakOpenID

        self.settings = settings
        self._openid = KeycloakOpenID(
            server_url=settings.server_url, realm_name=settings.realm, client_id=settings.audience
        )
        self._keys: Any = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def keys(self) -> Any:
        """The realm's signing keys (fetched now if not yet): a way to check the issuer answers."""
        return self._key_set()

    def _key_set(self, refresh: bool = False) -> Any:
        from jwcrypto import jwk

        with self._lock:
            stale = refresh and time.monotonic() - self._fetched_at > KEY_REFRESH_MIN_S
            if self._keys is None or stale:
                try:
                    certs = self._openid.certs()
                except Exception as exc:
                    raise IssuerUnreachable(
                        f"cannot fetch the signing keys of {self.settings.issuer}: {type(exc).__name__}"
                    ) from None
                keys = jwk.JWKSet()
                for cert in certs.get("keys", []):
                    if cert.get("use", "sig") == "sig":
                        keys.add(jwk.JWK(**cert))
                self._keys, self._fetched_at = keys, time.monotonic()
            return self._keys

    def verify(self, token: str) -> Identity:
        from jwcrypto.common import JWException, JWKeyNotFound

        checks = {"iss": self.settings.issuer, "aud": self.settings.audience, "exp": None, "sub": None}
        claims = None
        for refresh in (False, True):
            try:
                claims = self._openid.decode_token(
                    token, key=self._key_set(refresh), check_claims=checks, algs=ALGORITHMS, leeway=30
                )
                break
            except JWKeyNotFound:  # jwcrypto says this both for an unknown key id and for a bad signature
                if refresh:
                    known = _key_id(token) in {k.get("kid") for k in self._key_set().get("keys", [])}
                    raise InvalidToken(
                        "the signature does not verify"
                        if known
                        else "signed with a key the issuer does not publish"
                    ) from None
            except JWException as exc:
                raise InvalidToken(_reason(exc)) from None
            except (ValueError, TypeError, KeyError):
                raise InvalidToken("not a JSON Web Token") from None
        assert claims is not None
        nbf = claims.get(
            "nbf"
        )  # jwcrypto checks nbf only with its default claims, which check_claims replaces
        if isinstance(nbf, int | float) and nbf > time.time() + 30:
            raise InvalidToken("not valid yet")
        if claims.get("typ", "Bearer") != "Bearer":
            raise InvalidToken(f"a {claims.get('typ')} token, not an access token")
        roles = set(claims.get("realm_access", {}).get("roles", []))
        roles |= set(claims.get("resource_access", {}).get(self.settings.audience, {}).get("roles", []))
        name = claims.get("name") or " ".join(
            str(p) for p in (claims.get("given_name"), claims.get("family_name")) if p
        )
        return Identity(
            username=str(claims.get("preferred_username") or claims["sub"]),
            subject=str(claims["sub"]),
            roles=frozenset(roles),
            name=str(name or ""),
        )


def _key_id(token: str) -> str | None:
    """The `kid` of a token's header, read without trusting anything else in it."""
    import base64
    import json

    try:
        head = token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("kid")
    except (ValueError, AttributeError):
        return None


def _reason(exc: Exception) -> str:
    from jwcrypto.jws import InvalidJWSSignature
    from jwcrypto.jwt import JWTExpired, JWTInvalidClaimValue, JWTMissingClaim, JWTNotYetValid

    if isinstance(exc, JWTExpired):
        return "expired"
    if isinstance(exc, JWTNotYetValid):
        return "not valid yet"
    if isinstance(exc, JWTInvalidClaimValue):
        text = str(exc)
        for claim, words in (("iss", "issued by another issuer"), ("aud", "issued for another audience")):
            if f"'{claim}'" in text or f'"{claim}"' in text or f" {claim} " in text:
                return words
        return "a claim has a value this API does not accept"
    if isinstance(exc, JWTMissingClaim):
        return "a required claim is missing"
    if isinstance(exc, InvalidJWSSignature):
        return "the signature does not verify"
    return "not a valid signed token"
