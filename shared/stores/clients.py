"""Clients of the two Azure stores, built from settings (key or connection string locally, identity in Azure)."""
from __future__ import annotations

import warnings
from functools import lru_cache

from azure.cosmos import CosmosClient
from azure.storage.blob import BlobServiceClient, ExponentialRetry
from urllib3.exceptions import InsecureRequestWarning

from ..config.credentials import azure_credential
from ..config.settings import Settings


# One client per settings per process: clients hold connection pools and the account's metadata, and a
# Functions worker serves many requests.
@lru_cache(maxsize=8)
def cosmos_client(settings: Settings):
    # The local emulator serves a self-signed certificate; the SDK already skips verification for loopback
    # endpoints and would warn on every request.
    warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    credential = settings.cosmos_key or azure_credential(settings)
    return CosmosClient(settings.cosmos_endpoint, credential=credential,
                        connection_timeout=30, retry_total=9, retry_backoff_max=30)


@lru_cache(maxsize=8)
def blob_service(settings: Settings):
    # The SDK's default waits 15 s and more between tries: a storage outage would eat a run's whole budget one
    # page at a time. A few seconds of retries ride out a blip; a longer outage fails the day and stops the run
    # (see outages.py), and the next run collects what is missing.
    retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1)
    if settings.storage_connection_string:
        return BlobServiceClient.from_connection_string(settings.storage_connection_string, retry_policy=retry)
    return BlobServiceClient(settings.storage_account_url, credential=azure_credential(settings), retry_policy=retry)

