"""Device credentials at the broker: the :class:`CredentialIssuer` port and its adapters.

``MosquittoCredentialIssuer`` (dynamic security, local and compose) and
``IotCoreCredentialIssuer`` (AWS IoT Core: thing, certificate, policy with thing-name
variables). ``InMemoryCredentialIssuer`` is the fake for tests of everything around them.
"""

from fleetpulse.provision_api.credentials.port import (
    CredentialIssuer,
    CredentialsUnavailableError,
    DeviceIdentity,
    InMemoryCredentialIssuer,
    IssuedCredentials,
)

__all__ = [
    "CredentialIssuer",
    "CredentialsUnavailableError",
    "DeviceIdentity",
    "InMemoryCredentialIssuer",
    "IssuedCredentials",
]
