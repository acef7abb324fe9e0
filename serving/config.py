"""Server configuration: every flag has an environment variable (SMALLSERVE_<FLAG>)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from serving.batching import BatchingConfig
from serving.preprocess.limits import InputLimits
from serving.registry import DEFAULT_MAX_LOADED_VERSIONS, MODEL_CONTROL_MODES
from serving.runtime.providers import parse_provider_list
from serving.runtime.session import SessionConfig
from serving.security import SecurityConfig, add_security_arguments, security_from_args

ENV_PREFIX = "SMALLSERVE_"


@dataclass(frozen=True)
class ServerConfig:
    repository: Path
    host: str
    port: int
    session: SessionConfig
    workers: int
    max_batch_size: int
    max_message_bytes: int
    poll_interval: float
    grace_period: float
    log_level: str
    log_format: str
    batching: BatchingConfig = BatchingConfig()
    metrics_port: int = 0
    http_port: int = 0  # 0: off; -1: a free port
    inspector: bool = False  # the web inspector on the HTTP port (the flag's default is on)
    inline_below_us: int = 0
    event_loop: str = "asyncio"
    processes: int = 1
    reuse_port: bool = False
    security: SecurityConfig = SecurityConfig()
    input_limits: InputLimits = InputLimits()
    max_loaded_versions: int = DEFAULT_MAX_LOADED_VERSIONS
    model_control: str = "poll"
    load_models: tuple[str, ...] = ()  # explicit mode: loaded at start


def _env(flag: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"), default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m serving",
        description="Serve the models of a model repository over gRPC on onnxruntime: the "
                    "smallserve.v1 API, grpc.health.v1 and server reflection on one port.",
        epilog=f"Every option can also be set by an environment variable {ENV_PREFIX}<OPTION> "
               f"(e.g. {ENV_PREFIX}PORT=8001, {ENV_PREFIX}PROVIDERS=cpu); flags win.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repository", default=_env("repository", "exported"),
                   help="model repository: <name>/<version>/manifest.json + graphs")
    p.add_argument("--host", default=_env("host", "0.0.0.0"), help="address to listen on")
    p.add_argument("--port", type=int, default=int(_env("port", "8001")),
                   help="gRPC port (0 picks a free one and logs it)")
    p.add_argument("--http-port", type=int, default=int(_env("http_port", "8000")),
                   help="HTTP port of the Open Inference Protocol's REST form (KServe v2, "
                        "as Triton's); -1 picks a free one and logs it, 0 turns it off")
    p.add_argument("--inspector", choices=["on", "off"], default=_env("inspector", "on"),
                   help="the web inspector page at /inspect/ on the HTTP port (probabilities, "
                        "attention heat maps; off with the HTTP port)")
    p.add_argument("--providers", default=_env("providers", "auto"),
                   help="execution providers in priority order, e.g. 'cuda,cpu' or 'cpu'; "
                        "'auto' takes CUDA when this onnxruntime has it, else the CPU")
    p.add_argument("--model-providers", action="append", default=[],
                   metavar="NAME=LIST", help="providers for one model, e.g. mnist=cpu "
                                             "(repeatable); beats the model's manifest")
    p.add_argument("--intra-op-threads", type=int, default=int(_env("intra_op_threads", "0")),
                   help="onnxruntime threads inside one operator (0: by each graph: one "
                        "for decoder steps and recurrent encoders, whose operators are too "
                        "small to share, one per core for classifiers, taggers and CNN "
                        "encoders)")
    p.add_argument("--inter-op-threads", type=int, default=int(_env("inter_op_threads", "0")),
                   help="onnxruntime threads across operators (0: default)")
    p.add_argument("--ort-spinning", choices=["auto", "on", "off"],
                   default=_env("ort_spinning", "auto"),
                   help="let onnxruntime's threads busy-wait for work: 'auto' turns it off for "
                        "classifiers and taggers (a few large operators per call: spinning "
                        "only takes CPU from gRPC) and on for decoder steps (dozens of tiny "
                        "operators per step, each of which would otherwise wake its threads)")
    p.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"],
                   default=_env("event_loop", "auto"),
                   help="the event loop gRPC, REST and the batchers run on: 'auto' takes uvloop "
                        "(libuv, as MLServer and uvicorn use) where it is installed, else "
                        "asyncio's own")
    p.add_argument("--workers", type=int, default=int(_env("workers", "4")),
                   help="inference calls that may run at once")
    p.add_argument("--inline-below-us", type=int,
                   default=int(_env("inline_below_us", "300")),
                   help="model runs whose recent average is shorter than this run on the event "
                        "loop instead of a worker thread, saving the hand-off (about 0.2 ms on "
                        "two cores); longer ones never block the loop (0: never inline)")
    p.add_argument("--max-batch-size", type=int, default=int(_env("max_batch_size", "1024")),
                   help="largest batch one request may carry (RESOURCE_EXHAUSTED above)")
    p.add_argument("--max-message-bytes", type=int,
                   default=int(_env("max_message_bytes", str(16 * 1024 * 1024))),
                   help="largest message (gRPC, and HTTP body) received or sent; larger ones "
                        "are refused by the transport before Python reads them")
    p.add_argument("--max-image-pixels", type=int,
                   default=int(_env("max_image_pixels", str(InputLimits.max_image_pixels))),
                   help="largest encoded image (width x height) decoded; refused from its "
                        "header above")
    p.add_argument("--max-text-bytes", type=int,
                   default=int(_env("max_text_bytes", str(InputLimits.max_text_bytes))),
                   help="largest text (UTF-8 bytes) a translation request may carry")
    budget = p.add_argument_group(
        "cost of one call", "Estimated from the request before any work; a call over a budget "
        "is RESOURCE_EXHAUSTED at once, naming the figure and the limit.")
    for flag, what in (
            ("max_call_pixels", "image pixels one call may decode, summed from the headers"),
            ("max_call_elements", "tensor elements one call may carry"),
            ("max_decode_steps", "decoder-step rows one call may run: texts or images x beam "
                                 "x maximum length"),
            ("max_search_memory_bytes", "encoder memory one call's search may hold: texts x "
                                        "beam x source length x memory width x 4")):
        budget.add_argument("--" + flag.replace("_", "-"), type=int,
                            default=int(_env(flag, str(getattr(InputLimits, flag)))), help=what)
    p.add_argument("--poll-interval", type=float, default=float(_env("poll_interval", "2")),
                   help="seconds between scans of the repository for new versions (0: never)")
    p.add_argument("--max-loaded-versions", type=int,
                   default=int(_env("max_loaded_versions", str(DEFAULT_MAX_LOADED_VERSIONS))),
                   help="versions of one model kept loaded, the latest included: versions "
                        "asked for by number beyond it are unloaded least recently used first")
    p.add_argument("--model-control", choices=MODEL_CONTROL_MODES,
                   default=_env("model_control", "poll"),
                   help="poll: serve every model of the repository, following its versions; "
                        "explicit: serve only models loaded by --load-model or by the load "
                        "RPCs (Open Inference Protocol RepositoryModelLoad, smallserve "
                        "LoadModel), as Triton's --model-control-mode")
    p.add_argument("--load-model", action="append", default=[], metavar="NAME",
                   help="with --model-control explicit: a model to load at start (repeatable)")
    p.add_argument("--grace-period", type=float, default=float(_env("grace_period", "10")),
                   help="seconds in-flight calls get to finish on SIGTERM/SIGINT")
    batching = p.add_argument_group(
        "dynamic batching", "Concurrent calls to one model are merged into one run, as Triton's "
        "dynamic batcher does; a model's manifest (serving.dynamic_batching) can override these.")
    batching.add_argument("--batching", choices=["on", "off"], default=_env("batching", "on"))
    batching.add_argument("--batch-max-size", type=int,
                          default=int(_env("batch_max_size", "64")),
                          help="rows per model run")
    batching.add_argument("--batch-max-delay-us", type=int,
                          default=int(_env("batch_max_delay_us", "0")),
                          help="longest a call waits for others to join its batch (0: only "
                               "calls already waiting join)")
    batching.add_argument("--batch-queue-size", type=int,
                          default=int(_env("batch_queue_size", "4096")),
                          help="rows that may wait per model; more is RESOURCE_EXHAUSTED")
    batching.add_argument("--decode-batching", choices=["step", "merge"],
                          default=_env("decode_batching", "step"),
                          help="translation and captioning: 'step' decodes calls step by step "
                               "together, admitting new calls and releasing ended ones between "
                               "decoder steps (iteration-level batching), so a short call never "
                               "waits for a long one; 'merge' merges whole decodes of calls "
                               "that arrive together")
    batching.add_argument("--step-max-rows", type=int,
                          default=int(_env("step_max_rows", "128")),
                          help="decoder rows (sequences x beam) per step with --decode-batching "
                               "step; a larger single call runs alone")
    batching.add_argument("--caller-share", type=float,
                          default=float(_env("caller_share", "0.5")),
                          help="the most of a step batch one caller (connection) may hold while "
                               "others wait")
    batching.add_argument("--batch-instances", type=int,
                          default=int(_env("batch_instances", "1")),
                          help="runs of one model at once")
    scale = p.add_argument_group(
        "using every core", "Python gRPC serves from one core per process; --processes N starts "
        "N worker processes sharing the port (SO_REUSEPORT), each with cores/N for the "
        "onnxruntime threads of graphs of a few large operators unless --intra-op-threads is "
        "set, and worker i serving metrics on --metrics-port + i.")
    scale.add_argument("--processes", type=int, default=int(_env("processes", "1")),
                       help="worker processes sharing the gRPC port")
    # the supervisor tells each worker its cores; not a user's flag
    scale.add_argument("--core-share", type=int, default=0, help=argparse.SUPPRESS)
    scale.add_argument("--reuse-port", choices=["on", "off"], default=_env("reuse_port", "off"),
                       help="let several servers bind the port (set for each worker)")
    p.add_argument("--metrics-port", type=int, default=int(_env("metrics_port", "8002")),
                   help="HTTP port of the Prometheus /metrics endpoint (0: off)")
    add_security_arguments(p, _env)
    p.add_argument("--log-level", default=_env("log_level", "INFO"),
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", default=_env("log_format", "text"), choices=["text", "json"])
    return p


def parse_config(argv: list[str] | None = None) -> ServerConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    model_providers = {}
    env_model_providers = _env("model_providers", "")
    for item in [*filter(None, env_model_providers.split(";")), *args.model_providers]:
        name, sep, providers = item.partition("=")
        parsed = parse_provider_list(providers)
        if not sep or not name or parsed is None:
            parser.error(f"--model-providers expects NAME=LIST, got {item!r}")
        model_providers[name] = parsed
    if not 0 < args.caller_share <= 1:
        parser.error("--caller-share must lie in (0, 1]")
    if args.load_model and args.model_control != "explicit":
        parser.error("--load-model goes with --model-control explicit (poll mode serves every "
                     "model of the repository)")
    for flag in ("workers", "max_message_bytes", "batch_max_size", "batch_queue_size",
                 "batch_instances", "processes", "max_image_pixels", "max_text_bytes",
                 "max_call_pixels", "max_call_elements", "max_decode_steps",
                 "max_search_memory_bytes", "step_max_rows",
                 "max_loaded_versions"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("intra_op_threads", "inter_op_threads"):  # 0: decided for the operator
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must be at least 0")
    return ServerConfig(
        repository=Path(args.repository), host=args.host, port=args.port,
        session=SessionConfig(providers=parse_provider_list(args.providers),
                              intra_op_threads=args.intra_op_threads,
                              inter_op_threads=args.inter_op_threads,
                              allow_spinning={"on": True, "off": False}.get(args.ort_spinning),
                              core_share=max(0, args.core_share),
                              model_providers=model_providers or None),
        workers=args.workers, inline_below_us=max(0, args.inline_below_us),
        event_loop=args.event_loop,
        max_batch_size=args.max_batch_size,
        max_message_bytes=args.max_message_bytes, poll_interval=args.poll_interval,
        max_loaded_versions=args.max_loaded_versions, model_control=args.model_control,
        load_models=tuple(args.load_model),
        grace_period=args.grace_period, log_level=args.log_level, log_format=args.log_format,
        batching=BatchingConfig(enabled=args.batching == "on", max_batch_size=args.batch_max_size,
                                max_queue_delay_us=max(0, args.batch_max_delay_us),
                                max_queue_size=args.batch_queue_size,
                                instances=args.batch_instances,
                                iteration_level=args.decode_batching == "step",
                                step_rows=args.step_max_rows, caller_share=args.caller_share),
        metrics_port=args.metrics_port, http_port=args.http_port,
        inspector=args.inspector == "on", processes=args.processes,
        reuse_port=args.reuse_port == "on",
        security=security_from_args(args, parser),
        input_limits=InputLimits(max_image_pixels=args.max_image_pixels,
                                 max_text_bytes=args.max_text_bytes,
                                 max_call_pixels=args.max_call_pixels,
                                 max_call_elements=args.max_call_elements,
                                 max_decode_steps=args.max_decode_steps,
                                 max_search_memory_bytes=args.max_search_memory_bytes,
                                 max_response_bytes=args.max_message_bytes))
