"""Single sign-on (统一身份认证): who a request comes from, as the company's Keycloak realm vouches for it.

`sso/oidc.py` checks OIDC access tokens; `sso/realm/archive-hub.json` is the realm `scripts/keycloak.sh` imports
for development and tests (roles archivist and auditor, clients archive-hub-api and archive-hub-cli).
"""
