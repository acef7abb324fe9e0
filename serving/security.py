"""TLS and bearer-token authentication of the gRPC port; both off unless configured.

Tokens come from a file or the environment, never from a command-line value (every local user
can read a process's argv), and are never logged: the server keeps only their sha256 digests
and compares a call's digest against each of them in constant time. grpc.health.v1 stays open
so orchestrators can probe a server without holding a secret.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from serving import metrics

log = logging.getLogger(__name__)

TOKEN_ENV = "SMALLSERVE_AUTH_TOKEN"
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})

EnvLookup = Callable[[str, str], str]


@dataclass(frozen=True)
class SecurityConfig:
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: clients must present a certificate it signed
    token_digests: frozenset[bytes] = field(default=frozenset(), repr=False)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def auth(self) -> bool:
        return bool(self.token_digests)

    def describe(self) -> str:
        """For the start-up log: what is on, never a secret."""
        tls = "off" if not self.tls else "mutual" if self.tls_client_ca else "on"
        auth = f"{len(self.token_digests)} token(s)" if self.auth else "off"
        return f"TLS {tls}, token authentication {auth}"


def add_security_arguments(parser: argparse.ArgumentParser, env: EnvLookup) -> None:
    group = parser.add_argument_group(
        "security", "TLS and token authentication, both off by default. Tokens are read from "
        f"--auth-token-file and/or the {TOKEN_ENV} environment variable, never from a flag "
        "value; clients send 'authorization: Bearer <token>'. grpc.health.v1 needs no token.")
    group.add_argument("--tls-cert", default=env("tls_cert", "") or None, metavar="FILE",
                       help="PEM certificate chain of the server; turns TLS on")
    group.add_argument("--tls-key", default=env("tls_key", "") or None, metavar="FILE",
                       help="PEM private key of --tls-cert")
    group.add_argument("--tls-client-ca", default=env("tls_client_ca", "") or None,
                       metavar="FILE", help="PEM CA bundle: require client certificates it "
                                            "signed (mutual TLS)")
    group.add_argument("--auth-token-file", default=env("auth_token_file", "") or None,
                       metavar="FILE", help="accepted tokens, one per line ('#' comments); "
                                            "several allow rotation")


def security_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser,
                     environ: Mapping[str, str] = os.environ) -> SecurityConfig:
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    try:
        tokens = read_tokens(Path(args.auth_token_file) if args.auth_token_file else None,
                             environ)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    return SecurityConfig(
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        tls_client_ca=Path(args.tls_client_ca) if args.tls_client_ca else None,
        token_digests=frozenset(token_digest(t) for t in tokens))


def read_tokens(path: Path | None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Tokens from a file (one per line) and from the environment variable."""
    tokens = []
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ValueError(f"token file {path} is not UTF-8 text") from e
        tokens = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
        if not tokens:
            raise ValueError(f"token file {path} holds no token")
    if environ.get(TOKEN_ENV, "").strip():
        tokens.append(environ[TOKEN_ENV].strip())
    for t in tokens:
        if any(c.isspace() for c in t) or not t.isprintable():
            raise ValueError("a token must be one printable word without spaces")
    return tokens


def token_digest(token: str) -> bytes:
    # equal-length digests make the comparison's time independent of where a guess differs
    return hashlib.sha256(token.encode("utf-8")).digest()


def server_credentials(config: SecurityConfig) -> grpc.ServerCredentials | None:
    if not config.tls:
        return None
    assert config.tls_cert is not None and config.tls_key is not None
    try:
        cert, key = config.tls_cert.read_bytes(), config.tls_key.read_bytes()
        ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    except OSError as e:
        raise OSError(f"cannot read TLS files: {e}") from e
    # gRPC only says it cannot bind when handed something else; say which file is wrong
    for path, data, marker, what in [
            (config.tls_cert, cert, b"-----BEGIN CERTIFICATE-----", "certificate"),
            (config.tls_key, key, b" PRIVATE KEY-----", "private key"),  # PKCS#8, EC or RSA
            (config.tls_client_ca, ca, b"-----BEGIN CERTIFICATE-----", "certificate")]:
        if data is not None and marker not in data:
            raise OSError(f"{path} holds no PEM {what}")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)


def server_ssl_context(config: SecurityConfig) -> ssl.SSLContext | None:
    """The same certificate, key and client CA as the gRPC port, for the HTTP port."""
    if not config.tls:
        return None
    server_credentials(config)  # the same checks, naming the file that is wrong
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
        if config.tls_client_ca:
            context.load_verify_locations(str(config.tls_client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise OSError(f"cannot use the TLS files for HTTP: {e}") from e
    return context


def interceptors(config: SecurityConfig) -> list[grpc.aio.ServerInterceptor]:
    return [TokenAuthInterceptor(config.token_digests)] if config.auth else []


def service_of(method: str) -> str:
    """'/pkg.Service/Method' -> 'pkg.Service'."""
    return method.lstrip("/").partition("/")[0]


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for every call without an accepted bearer token, except health."""

    def __init__(self, digests: frozenset[bytes]) -> None:
        self._digests = tuple(digests)

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler | None]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if service_of(details.method) in OPEN_SERVICES or \
                self.allows(details.invocation_metadata or ()):
            return handler
        log.debug("refused a call to %s without a valid token", details.method[:200])
        # a label per client-made path would grow /metrics and memory without bound
        return _refusal(handler, details.method if handler is not None else UNKNOWN_METHOD)

    def allows(self, metadata: Sequence[Any]) -> bool:
        values = [m.value for m in metadata if m.key == "authorization"]
        return len(values) == 1 and bearer_accepted(self._digests, values[0])


def bearer_accepted(digests: Sequence[bytes], header: object) -> bool:
    """Whether an 'authorization' value ('Bearer <token>') carries an accepted token (gRPC
    metadata and HTTP headers alike)."""
    if not isinstance(header, str):
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    digest = token_digest(token.strip())
    accepted = False
    for known in digests:  # no early exit: every token costs the same
        accepted |= hmac.compare_digest(known, digest)
    return accepted


MESSAGE = "missing or invalid bearer token (metadata 'authorization: Bearer <token>')"
UNKNOWN_METHOD = "unknown"  # the metric label of every path this server does not serve


def _refusal(handler: grpc.RpcMethodHandler | None, method: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind that refuses before reading any request; method:
    the metric label, a method this server serves or UNKNOWN_METHOD."""

    async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        metrics.REFUSED.labels(method, grpc.StatusCode.UNAUTHENTICATED.name).inc()
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)

    streaming_in = handler is not None and handler.request_streaming
    streaming_out = handler is not None and handler.response_streaming
    if streaming_in:
        make = grpc.stream_stream_rpc_method_handler if streaming_out \
            else grpc.stream_unary_rpc_method_handler
    else:
        make = grpc.unary_stream_rpc_method_handler if streaming_out \
            else grpc.unary_unary_rpc_method_handler
    return make(_refuse)
