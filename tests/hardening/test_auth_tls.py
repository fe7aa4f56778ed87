"""Management needs a token (or mTLS, or loopback); TLS and mutual TLS with real certificates."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from serve.auth import TlsFiles, is_loopback, management_guard, read_token
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.server.conftest import add_model, two_output_model

TOKEN = "s3cret-token"


def _ok_infer(client) -> None:
    inputs = []
    for name in ("a", "b"):
        i = grpcclient.InferInput(name, [1, 4], "FP32")
        i.set_data_from_numpy(np.ones((1, 4), np.float32))
        inputs.append(i)
    assert (client.infer("m", inputs).as_numpy("sum") == 2).all()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> ModelRepository:
    repo = ModelRepository(tmp_path_factory.mktemp("repo"))
    add_model(repo, two_output_model(), "m")
    return repo


def _status(fn) -> str:
    with pytest.raises(grpcclient.InferenceServerException) as info:
        fn()
    return info.value.status()


def test_with_a_token_management_needs_it_and_inference_does_not(repo) -> None:
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None, auth_token=TOKEN)) as server:
        with grpcclient.InferenceServerClient(server.address) as client:
            _ok_infer(client)
            assert _status(lambda: client.load_model("m")) == "StatusCode.UNAUTHENTICATED"
            assert _status(lambda: client.get_model_repository_index()) == "StatusCode.UNAUTHENTICATED"
            wrong = {"authorization": "Bearer nope"}
            assert _status(lambda: client.unload_model("m", headers=wrong)) == "StatusCode.UNAUTHENTICATED"
            assert client.is_model_ready("m"), "a refused unload must not unload"
            good = {"authorization": f"Bearer {TOKEN}"}
            client.unload_model("m", headers=good)
            assert not client.is_model_ready("m")
            client.load_model("m", headers=good)
            _ok_infer(client)


def test_non_loopback_bind_without_token_or_mtls_refuses_management(repo) -> None:
    with ServerThread(ServerConfig(repo=repo.root, host="0.0.0.0", port=0, metrics_port=None)) as server:
        with grpcclient.InferenceServerClient(f"127.0.0.1:{server.port}") as client:
            _ok_infer(client)
            with pytest.raises(grpcclient.InferenceServerException) as info:
                client.load_model("m")
            assert info.value.status() == "StatusCode.PERMISSION_DENIED"
            assert "non-loopback" in info.value.message() and "--auth-token-file" in info.value.message()


def test_loopback_checks() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("[::]") and not is_loopback("10.1.2.3")
    assert management_guard("127.0.0.1", None, False) is None
    assert management_guard("0.0.0.0", None, True) is None
    assert management_guard("0.0.0.0", None, False) is not None


def test_token_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("BWSERVE_AUTH_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    assert read_token(path) == TOKEN and read_token(None) is None
    monkeypatch.setenv("BWSERVE_AUTH_TOKEN", "from-env")
    assert read_token(None) == "from-env"
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_token(path)


# -- TLS ----------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=bwserve test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
                 "-subj", f"/CN={who}", cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{who}.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


def test_metrics_bind_their_own_address(repo) -> None:
    """gRPC on one address, /metrics on another (a scrape network's), neither on the other's."""
    import urllib.request

    def fetch(host: str, port: int) -> str:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
            return reply.read().decode()

    config = ServerConfig(repo=repo.root, port=0, metrics_port=0, metrics_host="127.0.0.2")
    with ServerThread(config) as server:
        with grpcclient.InferenceServerClient(server.address) as client:
            _ok_infer(client)
        port = server.server.metrics_port
        assert "bwserve_requests_total" in fetch("127.0.0.2", port)
        with pytest.raises(OSError):  # connection refused: nothing of ours listens there
            fetch("127.0.0.1", port)
        with grpcclient.InferenceServerClient(f"127.0.0.2:{server.port}") as elsewhere:
            assert _status(lambda: elsewhere.is_server_live()) == "StatusCode.UNAVAILABLE"


def test_tls_serves_tls_clients_and_refuses_plaintext(repo, pki) -> None:
    tls = TlsFiles(pki / "server.crt", pki / "server.key")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None, tls=tls)) as server:
        with grpcclient.InferenceServerClient(server.address, ssl=True,
                                              root_certificates=str(pki / "ca.crt")) as client:
            _ok_infer(client)
        with grpcclient.InferenceServerClient(server.address) as plain:
            assert _status(lambda: plain.is_server_live()) == "StatusCode.UNAVAILABLE"


def test_mutual_tls_needs_a_client_certificate_and_then_allows_management(repo, pki) -> None:
    tls = TlsFiles(pki / "server.crt", pki / "server.key", ca=pki / "ca.crt")
    config = ServerConfig(repo=repo.root, host="0.0.0.0", port=0, metrics_port=None, tls=tls)
    with ServerThread(config) as server:
        address = f"127.0.0.1:{server.port}"
        with grpcclient.InferenceServerClient(address, ssl=True, root_certificates=str(pki / "ca.crt")) as anon:
            assert _status(lambda: anon.is_server_live()) == "StatusCode.UNAVAILABLE"
        with grpcclient.InferenceServerClient(
                address, ssl=True, root_certificates=str(pki / "ca.crt"),
                private_key=str(pki / "client.key"), certificate_chain=str(pki / "client.crt")) as client:
            _ok_infer(client)
            client.load_model("m")  # mTLS stands in for the token on a non-loopback bind
            assert client.is_model_ready("m")
