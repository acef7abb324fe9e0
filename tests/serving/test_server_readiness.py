"""Start-up order on a real port: NOT_SERVING and UNAVAILABLE until the models are loaded."""

import asyncio

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.client.messages import tensor
from serving.config import parse_config
from serving.server import Server
from tests.serving.synthetic import publish_classifier


def test_unavailable_until_ready_then_serving(tmp_path):
    publish_classifier(tmp_path, "m")
    config = parse_config(["--repository", str(tmp_path), "--host", "127.0.0.1",
                           "--port", "0", "--poll-interval", "0", "--metrics-port", "0"])

    async def scenario():
        server = Server(config)
        port = await server.start()
        request = pb.ClassifyRequest(model=pb.ModelRef(name="m"),
                                     pixels=tensor(np.zeros((1, 28, 28), np.uint8)))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            stub = pb_grpc.ModelServiceStub(channel)
            before = (await health.Check(health_pb2.HealthCheckRequest())).status
            try:
                await stub.Classify(request)
                unavailable = None
            except grpc.aio.AioRpcError as e:
                unavailable = e.code()
            await server.load_models()
            after = (await health.Check(health_pb2.HealthCheckRequest())).status
            response = await stub.Classify(request)
        await server.stop()
        return before, unavailable, after, response

    before, unavailable, after, response = asyncio.run(scenario())
    assert before == health_pb2.HealthCheckResponse.NOT_SERVING
    assert unavailable == grpc.StatusCode.UNAVAILABLE
    assert after == health_pb2.HealthCheckResponse.SERVING
    assert response.model.version == 1 and len(response.results[0].probabilities) == 10


def test_taken_port_is_an_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = parse_config(["--repository", str(tmp_path), "--host", "127.0.0.1",
                               "--port", str(port), "--metrics-port", "0"])

        async def scenario():
            try:
                await Server(config).start()
            except OSError as e:
                return str(e)
            return None

        assert "cannot listen" in (asyncio.run(scenario()) or "")
