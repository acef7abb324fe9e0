"""Every answered call is counted before its status leaves the server, errors included: a
scrape right after a caller sees an error already shows it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import pytest

from serving import metrics
from serving.errors import ModelNotFound
from serving.services.grpc_status import grpc_errors

LABELS = {"api": "test.count", "method": "Classify", "model": ""}


def counted(code: str) -> float:
    return metrics.REGISTRY.get_sample_value("smallserve_requests_total",
                                             {**LABELS, "code": code}) or 0.0


class Service:
    API = LABELS["api"]
    ctx = SimpleNamespace(registry=SimpleNamespace(models=lambda: ["known"]))

    @grpc_errors
    async def Classify(self, request: object, context: object) -> object:
        if getattr(request, "name", "") != "known":
            raise ModelNotFound("no model 'nope'")
        return "answer"


class Context:
    """grpc's side of one call: abort() is where the status goes out to the caller."""

    def __init__(self) -> None:
        self.counted_when_sent: float | None = None
        self.sent: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.counted_when_sent = counted(code.name)
        self.sent = (code, details)
        raise grpc.aio.AbortError()


def test_an_error_is_counted_before_its_status_is_sent() -> None:
    before = counted("NOT_FOUND")
    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(Service().Classify(SimpleNamespace(name="nope"), context))
    assert context.sent == (grpc.StatusCode.NOT_FOUND, "no model 'nope'")
    assert context.counted_when_sent == before + 1


def test_an_answer_is_counted_with_its_model() -> None:
    labels = {**LABELS, "model": "known", "code": "OK"}
    before = metrics.REGISTRY.get_sample_value("smallserve_requests_total", labels) or 0.0
    assert asyncio.run(Service().Classify(SimpleNamespace(name="known"), Context())) == "answer"
    assert metrics.REGISTRY.get_sample_value("smallserve_requests_total", labels) == before + 1
