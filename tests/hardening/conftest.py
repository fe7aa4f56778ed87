from tests.server.conftest import client, digits_model, server  # noqa: F401 - shared fixtures
