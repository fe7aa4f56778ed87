"""Who may manage models: a bearer token, mutual TLS, or a loopback-only bind.

Inference and health RPCs are open (on loopback by default). The model-management
RPCs (load, unload, repository index) need ``authorization: Bearer <token>`` when
a token is configured, and are refused outright on a non-loopback bind that has
neither a token nor mutual TLS. The check is a server interceptor installed only
when one of those rules applies, so a plain loopback server pays nothing per
request.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import grpc

SERVICE = "/inference.GRPCInferenceService/"
MANAGEMENT_METHODS = frozenset(SERVICE + m for m in ("RepositoryModelLoad", "RepositoryModelUnload", "RepositoryIndex"))
TOKEN_ENV = "BWSERVE_AUTH_TOKEN"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None = None  # set: clients must present a certificate signed by it (mTLS)

    def server_credentials(self) -> grpc.ServerCredentials:
        ca = self.ca.read_bytes() if self.ca else None
        return grpc.ssl_server_credentials([(self.key.read_bytes(), self.cert.read_bytes())],
                                           root_certificates=ca, require_client_auth=ca is not None)


def read_token(path: Path | None) -> str | None:
    """The management token from a file (preferred: not visible in `ps`) or $BWSERVE_AUTH_TOKEN."""
    token = path.read_text().strip() if path else os.environ.get(TOKEN_ENV, "").strip()
    if path and not token:
        raise ValueError(f"{path} is empty: expected the management token")
    return token or None


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def _refuse(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def abort(request, context):
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class ManagementGuard(grpc.aio.ServerInterceptor):
    """Lets management RPCs through only with the right bearer token (or never)."""

    def __init__(self, token: str | None, refusal: str = "") -> None:
        self._expected = f"Bearer {token}".encode() if token else None
        self._refusal = refusal

    async def intercept_service(self, continuation, details):
        if details.method not in MANAGEMENT_METHODS:
            return await continuation(details)
        if self._expected is None:
            return _refuse(grpc.StatusCode.PERMISSION_DENIED, self._refusal)
        given = next((v for k, v in details.invocation_metadata or () if k == "authorization"), "")
        given = given.encode() if isinstance(given, str) else given
        if not hmac.compare_digest(given, self._expected):
            return _refuse(grpc.StatusCode.UNAUTHENTICATED,
                           "model management needs the metadata 'authorization: Bearer <token>' "
                           "with the server's token")
        return await continuation(details)


def management_guard(host: str, token: str | None, mutual_tls: bool) -> ManagementGuard | None:
    """The interceptor the bind needs, or None when management is open (loopback, no token)."""
    if token:
        return ManagementGuard(token)
    if mutual_tls or is_loopback(host):
        return None
    return ManagementGuard(None, f"model management is refused on a non-loopback bind ({host}) without "
                                 f"a token (--auth-token-file or ${TOKEN_ENV}) or mutual TLS (--tls-ca)")
