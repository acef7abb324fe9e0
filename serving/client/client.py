from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.client import messages
from serving.client.channel import TLSOptions, auth_metadata, open_aio_channel, open_channel

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ClientError(Exception):
    """A call that failed: the gRPC status code and the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class Client:
    """Blocking client. Methods return plain dicts; failures raise ClientError.

    tls: TLSOptions() for a TLS server with a publicly trusted certificate, or
    TLSOptions.from_files(ca, cert, key) for a private CA and mutual TLS. token: sent as
    'authorization: Bearer <token>' with every call (see channel.read_token).
    """

    def __init__(self, target: str, timeout: float | None = 30.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 tls: TLSOptions | None = None, token: str | None = None) -> None:
        self.timeout = timeout
        self.call_metadata = auth_metadata(token)
        self.channel = open_channel(target, max_message_bytes, tls)
        self.stub = pb_grpc.ModelServiceStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self.call_metadata)
        except grpc.RpcError as e:
            raise ClientError(e.code(), e.details()) from None

    def list_models(self) -> list[dict[str, Any]]:
        return messages.models_to_dict(self._call(self.stub.ListModels, pb.ListModelsRequest()))

    def metadata(self, model: str, version: int = 0) -> dict[str, Any]:
        request = pb.GetModelMetadataRequest(model=messages.model_ref(model, version))
        return messages.metadata_to_dict(self._call(self.stub.GetModelMetadata, request))

    def classify(self, model: str, pixels: np.ndarray | None = None,
                 images: list[bytes] | None = None, top_k: int = 0,
                 version: int = 0) -> dict[str, Any]:
        request = messages.classify_request(model, version, pixels, images, top_k)
        return messages.classify_to_dict(self._call(self.stub.Classify, request))

    def tag(self, model: str, pixels: np.ndarray | None = None,
            images: list[bytes] | None = None, top_k: int = 0, threshold: float = 0.0,
            version: int = 0) -> dict[str, Any]:
        request = messages.tag_request(model, version, pixels, images, top_k, threshold)
        return messages.tag_to_dict(self._call(self.stub.Tag, request))

    def translate(self, model: str, texts: list[str], beam_size: int = 0, max_length: int = 0,
                  version: int = 0) -> dict[str, Any]:
        request = messages.translate_request(model, texts, version, beam_size, max_length)
        return messages.translate_to_dict(self._call(self.stub.Translate, request))

    def caption(self, model: str, pixels: np.ndarray | None = None,
                images: list[bytes] | None = None, beam_size: int = 0, max_length: int = 0,
                version: int = 0) -> dict[str, Any]:
        request = messages.caption_request(model, version, pixels, images, beam_size,
                                           max_length)
        return messages.caption_to_dict(self._call(self.stub.Caption, request))


class AsyncClient:
    """asyncio client with the same methods as Client."""

    def __init__(self, target: str, timeout: float | None = 30.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 tls: TLSOptions | None = None, token: str | None = None) -> None:
        self.timeout = timeout
        self.call_metadata = auth_metadata(token)
        self.channel = open_aio_channel(target, max_message_bytes, tls)
        self.stub = pb_grpc.ModelServiceStub(self.channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout, metadata=self.call_metadata)
        except grpc.aio.AioRpcError as e:
            raise ClientError(e.code(), e.details()) from None

    async def list_models(self) -> list[dict[str, Any]]:
        return messages.models_to_dict(
            await self._call(self.stub.ListModels, pb.ListModelsRequest()))

    async def metadata(self, model: str, version: int = 0) -> dict[str, Any]:
        request = pb.GetModelMetadataRequest(model=messages.model_ref(model, version))
        return messages.metadata_to_dict(await self._call(self.stub.GetModelMetadata, request))

    async def classify(self, model: str, pixels: np.ndarray | None = None,
                       images: list[bytes] | None = None, top_k: int = 0,
                       version: int = 0) -> dict[str, Any]:
        request = messages.classify_request(model, version, pixels, images, top_k)
        return messages.classify_to_dict(await self._call(self.stub.Classify, request))

    async def tag(self, model: str, pixels: np.ndarray | None = None,
                  images: list[bytes] | None = None, top_k: int = 0, threshold: float = 0.0,
                  version: int = 0) -> dict[str, Any]:
        request = messages.tag_request(model, version, pixels, images, top_k, threshold)
        return messages.tag_to_dict(await self._call(self.stub.Tag, request))

    async def translate(self, model: str, texts: list[str], beam_size: int = 0,
                        max_length: int = 0, version: int = 0) -> dict[str, Any]:
        request = messages.translate_request(model, texts, version, beam_size, max_length)
        return messages.translate_to_dict(await self._call(self.stub.Translate, request))

    async def caption(self, model: str, pixels: np.ndarray | None = None,
                      images: list[bytes] | None = None, beam_size: int = 0,
                      max_length: int = 0, version: int = 0) -> dict[str, Any]:
        request = messages.caption_request(model, version, pixels, images, beam_size,
                                           max_length)
        return messages.caption_to_dict(await self._call(self.stub.Caption, request))
