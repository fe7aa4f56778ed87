import pytest

from tests.scheduler.gates import Rig
from tests.server.conftest import digits_model  # noqa: F401 - the shared trained model fixture


@pytest.fixture()
def rig():
    """A scheduler over one gated instance (tests/scheduler/gates.py), closed after the test."""
    r = Rig()
    yield r
    r.close()
