"""Container healthcheck: exit 0 only while the server's grpc.health.v1 status is SERVING.

`python -m serving.client health` prints the status but exits 0 for NOT_SERVING too (the server
answers NOT_SERVING while it loads and warms up its models), which a HEALTHCHECK cannot use.
Standard library + grpcio-health-checking only, so it runs in every server image.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the server's own port setting, so a changed SMALLSERVE_PORT needs no second setting here
    p.add_argument("--target", default=f"127.0.0.1:{os.environ.get('SMALLSERVE_PORT', '8001')}")
    p.add_argument("--service", default="", help="health service name ('' = the whole server)")
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args(argv)
    with grpc.insecure_channel(args.target) as channel:
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
