"""deploy/envoy/envoy.yaml: valid against Envoy's own v3 API messages, and configured for gRPC:
HTTP/2 to the replicas, per-request round robin, active grpc.health.v1 checks."""

from __future__ import annotations

import importlib
import warnings

import pytest

from tests.deploy.files import ENVOY_FILE, load_yaml

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@pytest.fixture(scope="module")
def config():
    return load_yaml(ENVOY_FILE)


def _type_urls(node):
    if isinstance(node, dict):
        if "@type" in node:
            yield node["@type"]
        for value in node.values():
            yield from _type_urls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _type_urls(value)


def test_config_parses_as_envoy_v3_bootstrap(config, monkeypatch):
    # envoy-data-plane (dev extra) holds Python classes generated from Envoy's API protos: every
    # key must be a field of its message, every enum value known, every typed_config well-formed
    betterproto2 = pytest.importorskip("betterproto2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generated modules' own pydantic deprecations
        bootstrap = pytest.importorskip("envoy_data_plane.envoy.config.bootstrap.v3")
        for url in _type_urls(config):
            module, _, message = url.split("/", 1)[1].rpartition(".")
            # importing a message's module registers it for unpacking google.protobuf.Any
            assert hasattr(importlib.import_module(f"envoy_data_plane.{module}"), message), url
    # betterproto2 converts keys camelCase->snake_case and mangles names with digits
    # (consecutive_5xx): our keys are already the protos' snake_case names, so take them as is
    monkeypatch.setattr(betterproto2, "safe_snake_case", lambda key: key)
    with warnings.catch_warnings():
        # a field Envoy's API marks deprecated is an error: it goes away in a later Envoy
        warnings.simplefilter("error", DeprecationWarning)
        parsed = bootstrap.Bootstrap.from_dict(config)
    assert parsed.static_resources.clusters[0].health_checks[0].grpc_health_check is not None


def test_listener_routes_everything_to_the_cluster_through_the_router(config):
    listener, = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] > 0
    manager, = [f["typed_config"] for chain in listener["filter_chains"] for f in chain["filters"]]
    assert manager["@type"] == HCM
    assert manager["stat_prefix"], "stat_prefix is required"
    assert manager["codec_type"] in ("AUTO", "HTTP2")
    assert manager["http_filters"][-1]["typed_config"]["@type"] == ROUTER, "router must be last"
    clusters = {c["name"] for c in config["static_resources"]["clusters"]}
    routes = [r for vh in manager["route_config"]["virtual_hosts"] for r in vh["routes"]]
    assert routes and all(r["route"]["cluster"] in clusters for r in routes)
    assert routes[-1]["match"] == {"prefix": "/"}
    # Envoy's default 15 s route timeout would cut calls whose gRPC deadline is longer
    assert routes[-1]["route"]["timeout"] == "0s"


def test_cluster_speaks_http2_balances_per_request_and_checks_grpc_health(config):
    cluster, = config["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS", "one host per replica address, not one per name"
    assert cluster["lb_policy"] in ("ROUND_ROBIN", "LEAST_REQUEST")
    options = cluster["typed_extension_protocol_options"][HTTP_OPTIONS]
    assert options["@type"].endswith(HTTP_OPTIONS)
    # gRPC needs HTTP/2 upstream; HTTP/1.1 would break every call
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert cluster["load_assignment"]["cluster_name"] == cluster["name"]
    check, = cluster["health_checks"]
    assert "grpc_health_check" in check
    for key in ("timeout", "interval", "unhealthy_threshold", "healthy_threshold"):
        assert key in check, f"health check needs {key}"
