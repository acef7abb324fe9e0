"""Channels to a smallserve server: plaintext or TLS (with a client certificate for mutual TLS),
and the bearer token sent with every call.

The token travels as call metadata rather than as gRPC call credentials, because gRPC only
attaches call credentials on TLS channels and a server behind a TLS-terminating proxy is
reached in plaintext.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

TOKEN_ENV = "SMALLSERVE_AUTH_TOKEN"
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TLSOptions:
    """PEM bytes; no CA means the system's trusted roots."""

    ca_cert: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_files(cls, ca_cert: Path | str | None = None, client_cert: Path | str | None = None,
                   client_key: Path | str | None = None) -> TLSOptions:
        if bool(client_cert) != bool(client_key):
            raise ValueError("a client certificate needs its key, and the key its certificate")

        def read(path: Path | str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return cls(read(ca_cert), read(client_cert), read(client_key))

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca_cert,
                                            private_key=self.client_key,
                                            certificate_chain=self.client_cert)


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


def open_channel(target: str, max_message_bytes: int,
                 tls: TLSOptions | None = None) -> grpc.Channel:
    options = channel_options(max_message_bytes)
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options)


def open_aio_channel(target: str, max_message_bytes: int,
                     tls: TLSOptions | None = None) -> grpc.aio.Channel:
    options = channel_options(max_message_bytes)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.credentials(), options=options)


def auth_metadata(token: str | None) -> Metadata:
    return (("authorization", f"Bearer {token}"),) if token else ()


def read_token(path: Path | str | None = None,
               environ: Mapping[str, str] = os.environ) -> str | None:
    """The token in a file (its first non-empty line), else in SMALLSERVE_AUTH_TOKEN."""
    if path:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                return line.strip()
        raise ValueError(f"token file {path} holds no token")
    return environ.get(TOKEN_ENV, "").strip() or None
