"""Shared pytest set-up: deterministic torch, one thread (CI has 2 cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_configure(config):
    torch.set_num_threads(1)
