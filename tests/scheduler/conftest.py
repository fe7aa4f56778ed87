from tests.server.conftest import digits_model  # noqa: F401 - the shared trained model fixture
