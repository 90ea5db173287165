"""A dev-only OIDC issuer standing in for Keycloak on loopback, and dev token minting.

- :mod:`.keys`: the RS256 signing key in ``.dev/oidc-key.pem`` (created once, mode 600) and its JWK.
- :mod:`.tokens`: :func:`mint_token` builds the claims the API checks (iss, aud, sub, exp/nbf/iat,
  ``tenant_id``, ``realm_access.roles``) and signs them.
- :mod:`.server`: ``fleetpulse-dev-oidc`` serves Keycloak's discovery and JWKS paths; it refuses
  any bind address that is not loopback.
- :mod:`.cli`: ``fleetpulse-dev-token --tenant T --roles tenant-admin`` prints a bearer token.
"""

from fleetpulse.dev_oidc.config import DevOidcConfig
from fleetpulse.dev_oidc.keys import jwks, load_or_create_key
from fleetpulse.dev_oidc.tokens import TokenRequest, mint_token

__all__ = ["DevOidcConfig", "TokenRequest", "jwks", "load_or_create_key", "mint_token"]
