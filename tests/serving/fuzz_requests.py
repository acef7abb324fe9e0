"""Hypothesis strategies for random and malformed requests of both APIs, built from the server's
own generated stubs (so they run in the main test process, unlike tritonclient).

Most strategies start from a valid request for one of the fuzz server's models and damage it a
few ways at once, which reaches deeper into the server than noise would; pure noise is mixed in.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.oip.tensors import CONTENTS_FIELD, NUMPY_OF, encode_bytes_tensor

# the fuzz server's models: name -> (task, image size or 0 for text)
MODELS = {"digits": ("classify", 28), "tags": ("tag", 28), "toy-translate": ("translate", 0),
          "toy-caption": ("caption", 32)}
IMAGE_LIMIT = 1000 * 1000  # the fuzz server's --max-image-pixels
TEXT_LIMIT = 512  # the fuzz server's --max-text-bytes
BATCH_LIMIT = 64  # the fuzz server's --max-batch-size

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
EDGE_INTS = st.sampled_from([-(2**31), -1, 0, 1, 2, 3, 5, 6, 10, 11, 63, 64, 65, 2**31 - 1])
SMALL_INTS = st.one_of(EDGE_INTS, INT32)
BEAM_SIZES = st.one_of(st.sampled_from([0, 1, 1, 2, 3, 64, 65, -1]), INT32)
MAX_LENGTHS = st.one_of(st.sampled_from([0, 1, 2, 2**31 - 1, 10**6, -1]), INT32)
DIMS = st.one_of(st.sampled_from([-(2**63), -1, 0, 1, 2, 28, 32, 64, 65, 2**31, 2**40,
                                  2**62, 2**63 - 1]), st.integers(-3, 70))
SHAPES = st.lists(DIMS, max_size=5)
NAMES = st.one_of(st.sampled_from([*MODELS, "", "nope", "../digits", ".hidden", "digits/1",
                                   "DIGITS", "digits\x00", "a" * 300]), st.text(max_size=12))
FLOATS32 = st.floats(width=32)  # NaN, infinities and subnormals included
TEXTS = st.one_of(
    st.sampled_from(["el gato negro come", "la casa blanca", "", "   ", "\x00", "lo veo " * 40,
                     "x" * (TEXT_LIMIT + 1), "é" * (TEXT_LIMIT // 2 + 1), "\ufeff", "🙂" * 20])
    .map(str.encode),
    st.text(max_size=40).map(str.encode),
    st.binary(max_size=40),  # mostly invalid UTF-8
    st.sampled_from([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"caf\xe9", b"\x80abc"]))


# -- images ------------------------------------------------------------------------------------

def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A complete, valid 1-bit PNG of width x height zeros: tens of kilobytes on the wire,
    hundreds of megabytes once decoded. Written row by row, never held in memory whole."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor, idat = zlib.compressobj(9), []
    for _ in range(height):
        idat.append(compressor.compress(row))
    idat.append(compressor.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(idat)) + \
        chunk(b"IEND", b"")


def image_pool() -> list[bytes]:
    rng = np.random.default_rng(0)
    digit = Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8))
    photo = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    png, jpeg = encode(digit, "PNG"), encode(photo, "JPEG", quality=80)
    return [
        png, jpeg, encode(digit, "BMP"), encode(digit, "GIF"), encode(photo, "WEBP"),
        encode(Image.new("L", (1, 1), 7), "PNG"), encode(Image.new("RGB", (1, 1)), "JPEG"),
        encode(Image.new("RGBA", (3, 500)), "PNG"), encode(Image.new("I;16", (5, 5)), "PNG"),
        encode(Image.new("1", (1000, 1000)), "PNG"),  # exactly at the fuzz server's limit
        encode(Image.new("1", (1001, 1000)), "PNG"),  # one column over it
        encode(digit, "PPM"), encode(digit, "TIFF"),  # formats the server does not take
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
        png[:len(png) // 2], jpeg[:len(jpeg) // 2], png[:8], jpeg[:3],  # truncated
        png[:40] + bytes(len(png) - 40), b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"not an image",
        png_bomb(),
    ]


POOL = image_pool()


@st.composite
def images(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(POOL))
    how = draw(st.sampled_from(["as is", "as is", "truncate", "flip", "append"]))
    if how == "truncate" and data:
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    elif how == "append":
        data += draw(st.binary(max_size=16))
    return data


# -- smallserve.v1 -----------------------------------------------------------------------------

def _sized_data(shape: list[int], itemsize: int) -> int | None:
    count = 1
    for d in shape:
        if d < 0:
            return None
        count *= d
    return count * itemsize if count * itemsize <= 4_000_000 else None


@st.composite
def pb_tensors(draw: st.DrawFn, size: int = 28) -> pb.Tensor:
    plausible = draw(st.booleans())
    if plausible:
        n = draw(st.sampled_from([0, 1, 2, 3, BATCH_LIMIT, BATCH_LIMIT + 1]))
        shape = draw(st.sampled_from([[n, size, size], [n, 1, size, size], [n, size, size + 1],
                                      [n, 3, size, size], [size, size], [n, 0, 2**63 - 1],
                                      [n, 2**32, 2**32]]))
    else:
        shape = draw(SHAPES)
    dtype = draw(st.sampled_from([pb.FLOAT32, pb.FLOAT32, pb.UINT8, pb.DATA_TYPE_UNSPECIFIED,
                                  99]))
    itemsize = 1 if dtype == pb.UINT8 else 4
    nbytes = _sized_data(shape, itemsize)
    how = draw(st.sampled_from(["exact", "exact", "exact", "short", "long", "random"]))
    if nbytes is None or how == "random":
        data = draw(st.binary(max_size=64))
    else:
        if dtype == pb.UINT8 or itemsize != 4:
            data = bytes([draw(st.integers(0, 255))]) * nbytes
        else:
            value = draw(st.one_of(st.sampled_from([0.0, 255.0, -1.0, 1e30, float("nan"),
                                                    float("inf"), float("-inf")]), FLOATS32))
            array = np.full(nbytes // 4, value, np.float32)
            if array.size and draw(st.booleans()):
                array[draw(st.integers(0, array.size - 1))] = draw(FLOATS32)
            data = array.tobytes()
        if how == "short":
            data = data[:max(0, len(data) - draw(st.integers(1, 8)))]
        elif how == "long":
            data += draw(st.binary(min_size=1, max_size=8))
    return pb.Tensor(dtype=dtype, shape=shape, data=data)


@st.composite
def model_refs(draw: st.DrawFn, task: str | None = None) -> pb.ModelRef:
    usual = [n for n, (t, _) in MODELS.items() if t == task] or list(MODELS)
    name = draw(st.one_of(st.sampled_from(usual), st.sampled_from(usual), NAMES))
    version = draw(st.one_of(st.sampled_from([0, 0, 1, 2, -1]), INT64))
    return pb.ModelRef(name=name, version=version)


VALID_IMAGES = POOL[:8]  # decodable, in a format the server takes, under the pixel limit


@st.composite
def image_requests(draw: st.DrawFn, kind: type, task: str) -> object:
    """A valid request for a model of `task`, then up to three kinds of damage."""
    name = draw(st.sampled_from([n for n, (t, _) in MODELS.items() if t == task]))
    size = MODELS[name][1]
    request = kind(model=pb.ModelRef(name=name, version=draw(st.sampled_from([0, 1]))))
    rows = draw(st.integers(1, 3))
    if draw(st.booleans()):
        dtype = draw(st.sampled_from([np.uint8, np.float32]))
        pixels = np.full((rows, 1, size, size) if draw(st.booleans()) else (rows, size, size),
                         draw(st.integers(0, 255)), dtype)
        request.pixels.CopyFrom(pb.Tensor(dtype=pb.UINT8 if dtype == np.uint8 else pb.FLOAT32,
                                          shape=list(pixels.shape), data=pixels.tobytes()))
    else:
        request.images.extend(draw(st.lists(st.sampled_from(VALID_IMAGES), min_size=1,
                                            max_size=3)))
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["ref", "pixels", "images", "more images", "numbers",
                                     "numbers", "clear"]))
        if what == "ref":
            request.model.CopyFrom(draw(model_refs(task)))
        elif what == "pixels":
            request.pixels.CopyFrom(draw(pb_tensors(size)))
        elif what == "images":
            request.images[:] = draw(st.lists(images(), max_size=4))
        elif what == "more images":
            request.images.extend(draw(st.lists(images(), min_size=1, max_size=BATCH_LIMIT + 1)))
        elif what == "clear":
            request.ClearField("pixels")
            del request.images[:]
        elif hasattr(request, "beam_size"):
            request.beam_size, request.max_length = draw(BEAM_SIZES), draw(MAX_LENGTHS)
        else:
            request.top_k = draw(SMALL_INTS)
            if hasattr(request, "threshold"):
                request.threshold = draw(st.one_of(st.just(0.0), FLOATS32))
    return request


@st.composite
def translate_requests(draw: st.DrawFn) -> pb.TranslateRequest:
    request = pb.TranslateRequest(
        model=pb.ModelRef(name="toy-translate"),
        texts=draw(st.lists(st.sampled_from([b"el gato negro come", b"la casa blanca",
                                             b"lo veo"]), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["ref", "texts", "more texts", "many texts", "numbers"]))
        if what == "ref":
            request.model.CopyFrom(draw(model_refs("translate")))
        elif what == "texts":
            request.texts[:] = draw(st.lists(TEXTS, max_size=6))
        elif what == "more texts":
            request.texts.extend(draw(st.lists(TEXTS, min_size=1, max_size=3)))
        elif what == "many texts":
            request.texts.extend([b"lo veo"] * draw(st.sampled_from([BATCH_LIMIT - 3,
                                                                     BATCH_LIMIT + 1])))
        else:
            request.beam_size, request.max_length = draw(BEAM_SIZES), draw(MAX_LENGTHS)
    return request


def smallserve_requests() -> dict[str, st.SearchStrategy]:
    return {
        "ListModels": st.just(pb.ListModelsRequest()),
        "GetModelMetadata": st.builds(pb.GetModelMetadataRequest, model=model_refs()),
        "Classify": image_requests(pb.ClassifyRequest, "classify"),
        "Tag": image_requests(pb.TagRequest, "tag"),
        "Translate": translate_requests(),
        "Caption": image_requests(pb.CaptionRequest, "caption"),
    }


# -- Open Inference Protocol -------------------------------------------------------------------

VERSIONS = st.one_of(st.sampled_from(["", "", "1", "0", "2", "-1", "01", "\u00b2", "1e3", " 1",
                                      "99999999999999999999999"]), st.text(max_size=8))
DATATYPES = st.sampled_from([*NUMPY_OF, "FP32", "FP32", "BYTES", "FP8", "", "fp32", "STRING"])


@st.composite
def parameters(draw: st.DrawFn) -> oip.InferParameter:
    choice = draw(st.sampled_from(["bool_param", "int64_param", "uint64_param", "string_param",
                                   "double_param"]))
    value = {"bool_param": st.booleans(),
             "int64_param": st.one_of(EDGE_INTS, st.sampled_from([2**63 - 1, -(2**63)]), INT64),
             "uint64_param": st.one_of(st.sampled_from([0, 1, 3, 2**31, 2**63, 2**64 - 1]),
                                       st.integers(0, 2**64 - 1)),
             "string_param": st.one_of(st.sampled_from(["1", "3", "0", "-1", "\u00b2", "1e3",
                                                        "99999999999999999999"]),
                                       st.text(max_size=8)),
             "double_param": st.floats()}[choice]
    return oip.InferParameter(**{choice: draw(value)})


# what sequence models read from a request's parameters, valid or not
SEARCH_OPTIONS = st.one_of(st.sampled_from([
    oip.InferParameter(uint64_param=2**64 - 1), oip.InferParameter(uint64_param=2**63),
    oip.InferParameter(int64_param=2**63 - 1), oip.InferParameter(int64_param=-1),
    oip.InferParameter(int64_param=2), oip.InferParameter(uint64_param=1),
    oip.InferParameter(int64_param=1), oip.InferParameter(uint64_param=2**31 - 1),
    oip.InferParameter(string_param="99999999999999999999"),
    oip.InferParameter(string_param="\u00b2"), oip.InferParameter(string_param="3"),
    oip.InferParameter(bool_param=True), oip.InferParameter(double_param=2.0)]), parameters())
PARAMETER_MAPS = st.dictionaries(
    st.one_of(st.sampled_from(["beam_size", "max_length", "classification", "binary_data",
                               "priority", "timeout", ""]), st.text(max_size=6)),
    parameters(), max_size=3)


def _valid_infer(name: str, rows: int, image: bytes) -> oip.ModelInferRequest:
    """A correct ModelInfer request for one of the fuzz server's models."""
    request = oip.ModelInferRequest(model_name=name)
    task, size = MODELS[name]
    if task in ("classify", "tag"):
        pixels = np.full((rows, 1, size, size), 128, np.uint8)
        request.inputs.add(name="pixels", datatype="UINT8", shape=list(pixels.shape))
        request.raw_input_contents.append(pixels.tobytes())
    else:
        items = np.array([b"el gato negro" if task == "translate" else image] * rows,
                         dtype=object)
        request.inputs.add(name="text" if task == "translate" else "image", datatype="BYTES",
                           shape=[rows])
        request.raw_input_contents.append(encode_bytes_tensor(items))
    return request


def _damage(draw: st.DrawFn, request: oip.ModelInferRequest) -> None:
    """One of many ways a request can be wrong (or odd but valid)."""
    what = draw(st.sampled_from([
        "name", "version", "id", "parameters", "datatype", "shape", "raw short", "raw long",
        "raw random", "raw dropped", "raw extra", "typed", "typed and raw", "input name",
        "input twice", "no input", "outputs", "input parameters", "bytes prefix", "empty batch",
        "huge batch", "overflowing shape", "search options", "search options"]))
    tensor = request.inputs[0] if request.inputs else request.inputs.add(name="pixels")
    raw = request.raw_input_contents
    if what == "name":
        request.model_name = draw(NAMES)
    elif what == "version":
        request.model_version = draw(VERSIONS)
    elif what == "id":
        request.id = draw(st.text(max_size=50))
    elif what == "parameters":
        for k, v in draw(PARAMETER_MAPS).items():
            request.parameters[k].CopyFrom(v)
    elif what == "search options":
        key = draw(st.sampled_from(["beam_size", "max_length"]))
        request.parameters[key].CopyFrom(draw(SEARCH_OPTIONS))
    elif what == "input parameters":
        for k, v in draw(PARAMETER_MAPS).items():
            tensor.parameters[k].CopyFrom(v)
    elif what == "datatype":
        tensor.datatype = draw(DATATYPES)
    elif what == "shape":
        del tensor.shape[:]
        tensor.shape.extend(draw(SHAPES))
    elif what == "raw short" and raw:
        raw[0] = raw[0][:draw(st.integers(0, max(0, len(raw[0]) - 1)))]
    elif what == "raw long" and raw:
        raw[0] += draw(st.binary(min_size=1, max_size=16))
    elif what == "raw random" and raw:
        raw[0] = draw(st.binary(max_size=64))
    elif what == "raw dropped":
        del raw[:]
    elif what == "raw extra":
        raw.append(draw(st.binary(max_size=16)))
    elif what in ("typed", "typed and raw"):
        if what == "typed":
            del raw[:]
        field = CONTENTS_FIELD.get(tensor.datatype) or draw(
            st.sampled_from(sorted(set(CONTENTS_FIELD.values()))))
        count = draw(st.sampled_from([0, 1, 784, 1568, 1024, 2048]))
        values = {"fp32_contents": FLOATS32, "fp64_contents": st.floats(),
                  "bool_contents": st.booleans(), "int_contents": INT32,
                  "int64_contents": INT64, "uint_contents": st.integers(0, 2**32 - 1),
                  "uint64_contents": st.integers(0, 2**64 - 1),
                  "bytes_contents": st.one_of(TEXTS, images())}[field]
        getattr(tensor.contents, field).extend([draw(values)] * count)
    elif what == "input name":
        tensor.name = draw(st.one_of(st.sampled_from(["pixels", "text", "image", "x", ""]),
                                     st.text(max_size=8)))
    elif what == "input twice":
        request.inputs.add().CopyFrom(tensor)
        if raw:
            raw.append(raw[0])
    elif what == "no input":
        del request.inputs[:]
        del raw[:]
    elif what == "outputs":
        for _ in range(draw(st.integers(1, 3))):
            out = request.outputs.add(name=draw(st.one_of(st.sampled_from(
                ["probabilities", "logits", "translation", "attention", "caption",
                 "token_ids", "nope"]), st.text(max_size=6))))
            if draw(st.booleans()):
                out.parameters["classification"].CopyFrom(draw(parameters()))
    elif what == "bytes prefix" and raw:
        raw[0] = struct.pack("<I", draw(st.sampled_from([0, 1, 2**31, 2**32 - 1]))) + raw[0]
    elif what == "empty batch":
        del tensor.shape[:]
        tensor.shape.extend([0, *tensor.shape[1:]])
        if raw:
            raw[0] = b""
    elif what == "huge batch":
        dims = [draw(st.sampled_from([BATCH_LIMIT + 1, 2**31, 2**62])), *tensor.shape[1:]]
        del tensor.shape[:]
        tensor.shape.extend(dims)
    elif what == "overflowing shape":  # element counts that wrap around in int64 arithmetic
        del tensor.shape[:]
        tensor.shape.extend(draw(st.sampled_from([[1, 2**32, 2**32], [2, 2**63 - 1, 2],
                                                  [1, 1, 2**62, 4], [1, 0, 2**63 - 1],
                                                  [1, 2**40, 0, 2**40]])))
        if raw:
            raw[0] = b""


@st.composite
def infer_requests(draw: st.DrawFn) -> oip.ModelInferRequest:
    if draw(st.integers(0, 9)) == 0:  # now and then, noise from the ground up
        request = oip.ModelInferRequest(model_name=draw(NAMES), model_version=draw(VERSIONS))
        for _ in range(draw(st.integers(0, 3))):
            request.inputs.add(name=draw(st.text(max_size=6)), datatype=draw(DATATYPES),
                               shape=draw(SHAPES))
        request.raw_input_contents.extend(draw(st.lists(st.binary(max_size=32), max_size=3)))
        return request
    name = draw(st.sampled_from(list(MODELS)))
    request = _valid_infer(name, draw(st.sampled_from([1, 2, 3, BATCH_LIMIT])),
                           draw(images()))
    for _ in range(draw(st.integers(0, 3))):
        _damage(draw, request)
    return request


@st.composite
def sequence_infer_requests(draw: st.DrawFn) -> oip.ModelInferRequest:
    """A valid translate or caption request with random search options and other parameters."""
    name = draw(st.sampled_from([n for n, (t, _) in MODELS.items()
                                 if t in ("translate", "caption")]))
    request = _valid_infer(name, draw(st.integers(1, 3)), POOL[0])
    for key in draw(st.lists(st.sampled_from(["beam_size", "max_length"]), max_size=2)):
        request.parameters[key].CopyFrom(draw(SEARCH_OPTIONS))
    for k, v in draw(PARAMETER_MAPS).items():
        request.parameters[k].CopyFrom(v)
    return request


def oip_requests() -> dict[str, st.SearchStrategy]:
    named = {"name": st.one_of(st.sampled_from(list(MODELS)), NAMES), "version": VERSIONS}
    return {
        "ServerLive": st.just(oip.ServerLiveRequest()),
        "ServerReady": st.just(oip.ServerReadyRequest()),
        "ServerMetadata": st.just(oip.ServerMetadataRequest()),
        "ModelReady": st.builds(oip.ModelReadyRequest, **named),
        "ModelMetadata": st.builds(oip.ModelMetadataRequest, **named),
        "ModelConfig": st.builds(oip.ModelConfigRequest, **named),
        "ModelStatistics": st.builds(oip.ModelStatisticsRequest, **named),
        "RepositoryIndex": st.builds(oip.RepositoryIndexRequest,
                                     repository_name=st.text(max_size=10),
                                     ready=st.booleans()),
        "ModelInfer": infer_requests(),
    }


# -- bytes that are not quite the message ------------------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_delimited(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


@st.composite
def wire_damage(draw: st.DrawFn, valid: bytes) -> bytes:
    """Unknown fields (to be ignored), invalid UTF-8 in string field 1, or noise."""
    what = draw(st.sampled_from(["unknown field", "invalid utf-8", "noise", "cut"]))
    if what == "unknown field":
        return valid + varint(draw(st.integers(900, 5000)) << 3 | 2) + varint(3) + b"abc"
    if what == "invalid utf-8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"a\x80b"]))
        # field 1 is a name in OIP requests and the ModelRef, whose field 1 is the name, in ours
        return valid + length_delimited(1, draw(st.sampled_from(
            [bad, length_delimited(1, bad)])))
    if what == "cut" and valid:
        return valid[:draw(st.integers(0, len(valid) - 1))]
    return draw(st.binary(max_size=64))
