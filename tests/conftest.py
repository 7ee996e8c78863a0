"""Shared fixtures: one local stack (Azurite, Cosmos server, Graph simulator) for the whole test session."""
from __future__ import annotations

import os
import uuid

import pytest

from devstack.stack import Stack


@pytest.fixture(scope="session")
def stack():
    with Stack.on_free_ports() as running:
        yield running


@pytest.fixture(scope="session")
def stack_env(stack) -> dict[str, str]:
    """Settings that point the app at the session stack, each test run in its own database and archive."""
    suffix = uuid.uuid4().hex[:8]
    return {**stack.app_env(), "COSMOS_DATABASE": f"test{suffix}", "ARCHIVE_CONTAINER": f"archive-{suffix}"}


@pytest.fixture
def app_env(stack_env, monkeypatch) -> dict[str, str]:
    """Put the stack settings into os.environ for code that reads them there (the function entry points)."""
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)
