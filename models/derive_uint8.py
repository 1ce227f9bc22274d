"""Derive all-minilm-l6-v2/model.uint8.onnx from model.int8.onnx: the same int8 weights, stored as
uint8 (w + 128, zero point + 128), so that native onnxruntime runs its u8u8 kernels instead of
u8s8 ones. Standard library only (no onnx, no torch); the output is byte-for-byte reproducible:

    python3 models/derive_uint8.py [--check]

Why (see MODEL_CARD.md): `quantize_dynamic` turns every MatMul into DynamicQuantizeLinear
(activations to uint8) + MatMulInteger(uint8 activations, int8 weights). On x86 CPUs without
VNNI, onnxruntime's u8s8 kernels add pairs of u8*s8 products in saturating 16-bit arithmetic
(vpmaddubsw), which bent native vectors to cosine 0.96 of the browser's. Its u8u8 kernels widen
to 16 bits before multiplying and are exact. Since (a - za)(w - 0) = (a - za)((w + 128) - 128),
the uint8 file computes exactly the same int32 sums as the int8 one wherever neither saturates.

The rewrite touches only MatMulInteger's B and b_zero_point initializers, and refuses a model
where those tensors feed anything else. It edits the protobuf wire format directly: TensorProto
`data_type` (field 2) INT8 -> UINT8, `raw_data` (field 9) XOR 0x80, `int32_data` (field 5)
re-written as raw uint8 bytes; the enclosing GraphProto and ModelProto lengths are re-encoded.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "all-minilm-l6-v2/model.int8.onnx"
TARGET = HERE / "all-minilm-l6-v2/model.uint8.onnx"

INT8, UINT8 = 3, 2  # onnx TensorProto.DataType
MODEL_GRAPH = 7  # ModelProto.graph
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5  # GraphProto
NODE_INPUT, NODE_OP_TYPE = 1, 4  # NodeProto
TENSOR_DATA_TYPE, TENSOR_INT32_DATA, TENSOR_NAME, TENSOR_RAW_DATA = 2, 5, 8, 9  # TensorProto
FLIP = bytes(b ^ 0x80 for b in range(256))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the key, start of the value, end of the value)."""
    pos = start
    while pos < end:
        key_at = pos
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, value_end = _varint(buf, pos)
        elif wire == 1:
            value_end = pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value_end = pos + size
        elif wire == 5:
            value_end = pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {key_at}")
        yield field, wire, key_at, pos, value_end
        pos = value_end
    if pos != end:
        raise ValueError("truncated protobuf message")


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(payload)) + payload


def _int8_values(buf: bytes, wire: int, start: int, end: int) -> list[int]:
    """int32_data entries (packed or not); int8 values are stored as sign-extended varints."""
    values, pos = [], start
    while pos < end:
        value, pos = _varint(buf, pos)
        values.append(value - (1 << 64) if value >= 1 << 63 else value)
        if wire == 0:
            break
    return values


def _uint8_tensor(buf: bytes, start: int, end: int) -> bytes:
    """The TensorProto at buf[start:end] with its int8 data turned into uint8 (+128)."""
    out, ints, raw = bytearray(), [], None
    for field, wire, key_at, value_at, value_end in _fields(buf, start, end):
        if field == TENSOR_DATA_TYPE:
            if _varint(buf, value_at)[0] != INT8:
                raise ValueError("expected an int8 tensor")
            out += _encode_varint(TENSOR_DATA_TYPE << 3) + _encode_varint(UINT8)
        elif field == TENSOR_INT32_DATA:
            ints += _int8_values(buf, wire, value_at, value_end)
        elif field == TENSOR_RAW_DATA:
            raw = buf[value_at:value_end].translate(FLIP)
        else:
            out += buf[key_at:value_end]
    if ints:
        if raw is not None or not all(-128 <= v <= 127 for v in ints):
            raise ValueError("unexpected int8 tensor layout")
        raw = bytes(v + 128 for v in ints)
    if raw is None:
        raise ValueError("int8 tensor without data")
    return bytes(out) + _length_delimited(TENSOR_RAW_DATA, raw)


def _text(buf: bytes, start: int, end: int) -> str:
    return buf[start:end].decode("utf-8")


def _node(model: bytes, start: int, end: int) -> tuple[str, list[str]]:
    """A NodeProto's op type and inputs."""
    inputs, op = [], ""
    for field, _, _, value_at, value_end in _fields(model, start, end):
        if field == NODE_INPUT:
            inputs.append(_text(model, value_at, value_end))
        elif field == NODE_OP_TYPE:
            op = _text(model, value_at, value_end)
    return op, inputs


def _weights(model: bytes, start: int, end: int) -> set[tuple[int, int]]:
    """Where MatMulInteger's B and b_zero_point initializers sit in the GraphProto."""
    targets: set[str] = set()
    elsewhere: set[str] = set()
    initializers: dict[str, tuple[int, int]] = {}
    for field, _, _, value_at, value_end in _fields(model, start, end):
        if field == GRAPH_NODE:
            op, inputs = _node(model, value_at, value_end)
            if op == "MatMulInteger":  # A, B, a_zero_point, b_zero_point
                targets.update(inputs[1::2])
                elsewhere.update(inputs[0::2])
            else:
                elsewhere.update(inputs)
        elif field == GRAPH_INITIALIZER:
            for tfield, _, _, tat, tend in _fields(model, value_at, value_end):
                if tfield == TENSOR_NAME:
                    initializers[_text(model, tat, tend)] = (value_at, value_end)
    targets.discard("")
    if targets & elsewhere:
        raise ValueError(f"weights also used outside MatMulInteger: {sorted(targets & elsewhere)}")
    if not targets <= initializers.keys():
        raise ValueError("MatMulInteger weights that are not initializers")
    return {initializers[name] for name in targets}


def to_uint8(model: bytes) -> tuple[bytes, int]:
    """The rewritten model and how many initializers changed."""
    graphs = [f for f in _fields(model, 0, len(model)) if f[0] == MODEL_GRAPH]
    if len(graphs) != 1:
        raise ValueError("expected one graph")
    _, _, graph_key, graph_at, graph_end = graphs[0]
    replaced = _weights(model, graph_at, graph_end)
    graph = bytearray()
    for _, _, key_at, value_at, value_end in _fields(model, graph_at, graph_end):
        if (value_at, value_end) in replaced:
            graph += _length_delimited(GRAPH_INITIALIZER,
                                       _uint8_tensor(model, value_at, value_end))
        else:
            graph += model[key_at:value_end]
    out = model[:graph_key] + _length_delimited(MODEL_GRAPH, bytes(graph)) + model[graph_end:]
    return out, len(replaced)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only verify that the committed uint8 file is up to date")
    args = parser.parse_args(argv)
    data, count = to_uint8(SOURCE.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        ok = TARGET.exists() and TARGET.read_bytes() == data
        print(f"{TARGET.name}: {'up to date' if ok else 'STALE: run models/derive_uint8.py'}")
        return 0 if ok else 1
    TARGET.write_bytes(data)
    print(f"wrote {TARGET} ({len(data):,} bytes, {count} tensors to uint8), sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
