"""python -m serving.client --target HOST:PORT <command> ...  (JSON on stdout)"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from serving.client.channel import TOKEN_ENV, TLSOptions, open_channel, read_token
from serving.client.client import DEFAULT_MAX_MESSAGE_BYTES, Client, ClientError
from serving.client.plots import attention_heatmap, attention_overlay
from serving.formats.idx import IdxError, read_idx


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.client",
                                description="Call a smallserve server; prints JSON.")
    p.add_argument("--target", default="localhost:8001", help="server HOST:PORT")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline per call, seconds")
    sec = p.add_argument_group("security", f"TLS and the bearer token; the token comes from "
                               f"--token-file or the {TOKEN_ENV} environment variable")
    sec.add_argument("--tls", action="store_true",
                     help="TLS, trusting the system's root certificates")
    sec.add_argument("--tls-ca", type=Path, metavar="FILE",
                     help="TLS, trusting this PEM CA bundle (implies --tls)")
    sec.add_argument("--tls-cert", type=Path, metavar="FILE",
                     help="client certificate (PEM) for mutual TLS (implies --tls)")
    sec.add_argument("--tls-key", type=Path, metavar="FILE", help="key of --tls-cert (PEM)")
    sec.add_argument("--token-file", type=Path, metavar="FILE",
                     help="file whose first line is the bearer token")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the models and their versions")
    sub.add_parser("health", help="grpc.health.v1 status of the server (exit 3 unless SERVING)")
    meta = sub.add_parser("metadata", help="a model's tensors, labels and manifest")
    _model_options(meta)
    cls = sub.add_parser("classify", help="classify images (PNG/JPEG files or IDX entries)")
    _image_options(cls)
    tag = sub.add_parser("tag", help="multi-label tagging of images (files or IDX entries)")
    _image_options(tag)
    tr = sub.add_parser("translate", help="translate sentences; attention of every piece")
    _model_options(tr)
    tr.add_argument("texts", nargs="+", help="sentences to translate")
    tr.add_argument("--beam-size", type=int, default=0, help="0: the model's default; 1: greedy")
    tr.add_argument("--max-length", type=int, default=0, help="most target pieces (0: model's)")
    tr.add_argument("--plot", type=Path, help="draw the first sentence's attention to this PNG")
    cap = sub.add_parser("caption", help="caption images; attention map of every word")
    _image_options(cap)
    cap.add_argument("--beam-size", type=int, default=0, help="0: the model's default; 1: greedy")
    cap.add_argument("--max-length", type=int, default=0, help="most words (0: the model's)")
    cap.add_argument("--plot", type=Path, help="overlay the first image's attention maps (PNG)")
    tag.add_argument("--threshold", type=float, default=0.0,
                     help="one threshold for every label (default: the model's tuned ones)")
    return p


def _image_options(p: argparse.ArgumentParser) -> None:
    _model_options(p)
    p.add_argument("images", nargs="*", type=Path, help="image files")
    p.add_argument("--idx", type=Path, help="an IDX image file (e.g. t10k-images-idx3-ubyte.gz)")
    p.add_argument("--index", type=_indices, action="append", default=[],
                   help="entries of --idx to send: 7, or a range 0:32 (repeatable)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--probabilities", action="store_true",
                   help="include the full probability vector of each input")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--version", type=int, default=0, help="version (default: latest)")


def _indices(text: str) -> list[int]:
    start, sep, stop = text.partition(":")
    try:
        return list(range(int(start), int(stop))) if sep else [int(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or START:STOP, got {text!r}") from None


def connection(args: argparse.Namespace) -> dict[str, Any]:
    """Client keyword arguments for TLS and the token, from the command line."""
    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        try:
            tls = TLSOptions.from_files(args.tls_ca, args.tls_cert, args.tls_key)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    try:
        token = read_token(args.token_file)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return {"tls": tls, "token": token}


def run(args: argparse.Namespace) -> Any:
    conn = connection(args)
    if args.command == "health":
        with open_channel(args.target, DEFAULT_MAX_MESSAGE_BYTES, conn["tls"]) as channel:
            try:
                status = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=args.timeout).status
            except grpc.RpcError as e:
                raise ClientError(e.code(), e.details()) from None
        return {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(status)}
    with Client(args.target, timeout=args.timeout, **conn) as client:
        if args.command == "models":
            return client.list_models()
        if args.command == "metadata":
            return client.metadata(args.model, args.version)
        if args.command == "translate":
            result = client.translate(args.model, args.texts, args.beam_size, args.max_length,
                                      args.version)
            if args.plot:
                first = result["translations"][0]
                attention_heatmap(first["attention"], first["target_pieces"],
                                  first["source_pieces"], args.plot)
            return result
        return images_command(client, args)


def images_command(client: Client, args: argparse.Namespace) -> Any:
    """classify / tag: images from files or from an IDX file, one result per image."""
    if bool(args.images) == bool(args.idx):
        raise SystemExit(f"{args.command}: give image files or --idx (with --index), not both")
    if args.idx:
        array = read_idx(args.idx)
        picked = [i for chunk in args.index for i in chunk] or [0]
        bad = [i for i in picked if not 0 <= i < len(array)]
        if bad:
            raise SystemExit(f"{args.command}: --index {bad[0]} is outside 0..{len(array) - 1}")
        inputs = {"pixels": array[picked]}
        sources = [f"{args.idx}[{i}]" for i in picked]
    else:
        inputs = {"images": [p.read_bytes() for p in args.images]}
        sources = [str(p) for p in args.images]
    if args.command == "caption":
        result = client.caption(args.model, beam_size=args.beam_size,
                                max_length=args.max_length, version=args.version, **inputs)
        if args.plot:
            first = result["captions"][0]
            image = Image.open(args.images[0]) if args.images else \
                Image.fromarray(inputs["pixels"][0].astype(np.uint8))
            attention_overlay(image, first["attention"], first["tokens"], args.plot)
        for source, item in zip(sources, result["captions"], strict=True):
            item["input"] = source
        return result
    if args.command == "tag":
        result = client.tag(args.model, top_k=args.top_k, threshold=args.threshold,
                            version=args.version, **inputs)
    else:
        result = client.classify(args.model, top_k=args.top_k, version=args.version, **inputs)
    for source, item in zip(sources, result["results"], strict=True):
        item["input"] = source
        if not args.probabilities:
            del item["probabilities"]
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output = run(args)
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, IdxError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    json.dump(output, sys.stdout, indent=2)
    print()
    if args.command == "health" and output["status"] != "SERVING":
        return 3  # so the command works as a container or script health probe
    return 0


if __name__ == "__main__":
    sys.exit(main())
