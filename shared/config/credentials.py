"""Credentials: for Microsoft Graph per GRAPH_CREDENTIAL, and for Cosmos DB / Blob storage by managed identity."""
from __future__ import annotations

from azure.core.credentials import AccessToken, TokenCredential

from .settings import Settings


class StaticTokenCredential:
    """Hands out a fixed bearer token. Settings allow it only for a loopback GRAPH_ENDPOINT (local simulators)."""

    def __init__(self, token: str):
        self._token = token

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        # Far-future expiry: a simulator token never needs refreshing.
        return AccessToken(self._token, 4_102_444_800)


def graph_credential(settings: Settings) -> TokenCredential:
    # Imported lazily: azure.identity costs about half a second to import and the query routes never need it.
    from azure import identity

    mode = settings.graph_credential
    if mode == "static_token":
        return StaticTokenCredential(settings.graph_static_token or "")
    if mode == "client_secret":
        return identity.ClientSecretCredential(settings.graph_tenant_id, settings.graph_client_id,
                                               settings.graph_client_secret)
    if mode == "certificate":
        return identity.CertificateCredential(settings.graph_tenant_id, settings.graph_client_id,
                                              settings.graph_certificate_path,
                                              password=settings.graph_certificate_password)
    if mode == "default":
        return identity.DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
    client_id = settings.graph_client_id or settings.azure_client_id
    return identity.ManagedIdentityCredential(client_id=client_id) if client_id else identity.ManagedIdentityCredential()


def azure_credential(settings: Settings) -> TokenCredential:
    """Identity for Cosmos DB and Blob storage when no key / connection string is set."""
    from azure import identity

    return identity.DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
