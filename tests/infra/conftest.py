"""Fixtures of the Terraform suites (fleetpulse.testing.terraform does the work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetpulse.testing.terraform import Terraform, copy_module


@pytest.fixture
def terraform(tmp_path: Path) -> Terraform:
    """A copy of the module, initialised with the local plugins and no backend."""
    tf = Terraform(copy_module(tmp_path))
    tf.init(backend=False)
    return tf
