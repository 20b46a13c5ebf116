import pathlib

import pytest

import mvi

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def cloud(tmp_path):
    """A fresh local cloud with its state under a temporary folder."""
    c = mvi.LocalCloud(root=str(tmp_path / "state"), seed=7)
    yield c


@pytest.fixture
def mem():
    """A fresh in-memory local cloud (no disk)."""
    return mvi.LocalCloud(in_memory=True, seed=7)
