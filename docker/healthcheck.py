"""Container healthcheck: exit 0 only while the server's grpc.health.v1 status is SERVING.

`python -m serving.client health` prints the status but exits 0 for NOT_SERVING too (the server
answers NOT_SERVING while it loads and warms up its models), which a HEALTHCHECK cannot use.
Standard library + grpcio-health-checking only, so it runs in every server image.

It reads the server's own settings: with SMALLSERVE_TLS_CERT set it speaks TLS, trusting
HEALTHCHECK_CA (the CA that signed the server's certificate; default: the server's certificate
itself, which gRPC accepts as a trust anchor) and, when the server demands client certificates
(SMALLSERVE_TLS_CLIENT_CA), presenting HEALTHCHECK_CLIENT_CERT / HEALTHCHECK_CLIENT_KEY. The
certificate must name the target host (127.0.0.1 or localhost), or HEALTHCHECK_SERVER_NAME
gives the name to check. The health service needs no token.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def open_channel(target: str, env: Mapping[str, str]) -> grpc.Channel:
    cert = env.get("SMALLSERVE_TLS_CERT")
    if not cert:
        return grpc.insecure_channel(target)

    def read(name: str) -> bytes | None:
        path = env.get(name)
        return Path(path).read_bytes() if path else None

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read("HEALTHCHECK_CA") or read("SMALLSERVE_TLS_CERT"),
        private_key=read("HEALTHCHECK_CLIENT_KEY"),
        certificate_chain=read("HEALTHCHECK_CLIENT_CERT"))
    name = env.get("HEALTHCHECK_SERVER_NAME")
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(target, credentials, options)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the server's own port setting, so a changed SMALLSERVE_PORT needs no second setting here
    p.add_argument("--target", default=f"127.0.0.1:{os.environ.get('SMALLSERVE_PORT', '8001')}")
    p.add_argument("--service", default="", help="health service name ('' = the whole server)")
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args(argv)
    try:
        channel = open_channel(args.target, os.environ)
    except OSError as e:
        print(f"healthcheck: cannot read a TLS file: {e}", file=sys.stderr)
        return 1
    with channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout).status
        except grpc.RpcError as e:
            print(f"{args.target}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    print(f"{args.target}: {name}")
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
