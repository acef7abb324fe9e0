"""Errors a request can meet, each carrying the gRPC status code the field expects."""

from __future__ import annotations

import grpc


class ServingError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInput(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND


class NotReady(ServingError):
    code = grpc.StatusCode.UNAVAILABLE


class TooLarge(ServingError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServingError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Abandoned(ServingError):
    """Work stopped because every caller waiting for it is gone."""

    code = grpc.StatusCode.CANCELLED


class FailedPrecondition(ServingError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ServingError):
    code = grpc.StatusCode.UNAUTHENTICATED
