"""The wire format: typed messages to ZeroMQ frames and back, strictly validated. No pickle.

A :class:`Message` is a ``kind``, a ``meta`` map (msgpack scalars, strings, lists, maps) and
named numpy ``arrays``. On the wire it is a multipart message::

    frame 0    msgpack map {"v": PROTOCOL_VERSION, "kind": str, "meta": map,
                            "arrays": [[name, dtype_str, shape], ...], ["z": "lz4" | "p": 1]}
    frame 1..  one raw C-contiguous little-endian buffer per array, in header order
               ("p": 1: ONE frame, the arrays packed in header order, each starting at a
               multiple of :data:`PACK_ALIGN` bytes, zero padding between them, none after)

A message with two or more arrays of at most :data:`PACK_MAX_BYTES` in all (a LIDAR chunk of
100 steps) is *packed*: one copy at the sender buys a two-frame message, and
every hop (the worker's send, the server's receive and forward, the trainer's receive) pays
per frame in libzmq and in Python (issue 18: a chunk was twelve frames). Larger messages
(weights, image chunks) keep a frame per array and are never copied: :func:`encode`
hands out views of the arrays' memory. :func:`decode` wraps received buffers without a copy
either way (``np.ndarray`` over the frame, at the array's offset when packed).

Compression is chosen per message: ``encode(msg, compress="lz4")`` compresses every array
frame with an LZ4 block (no stored size: the header's shape and dtype already say how many
bytes each frame must decompress to) and adds ``"z": "lz4"`` to the header; without it the
header has no ``"z"`` key and frames are raw. :func:`decode` checks the sizes announced by
the header against ``max_bytes`` *before* decompressing anything (a small message cannot
expand into gigabytes) and requires each frame to decompress to exactly its announced size.
Decompressed arrays are copies, of course; LZ4 pays off for images and large, redundant
arrays on slow links, not for random floats.

:func:`decode` trusts nothing: the header must be a map with exactly the keys above, ``v``
must equal :data:`PROTOCOL_VERSION` (else :class:`ProtocolError` naming both), ``kind`` must be
known, dtypes come from :data:`DTYPES` (little-endian, no objects), shapes are lists of at
most :data:`MAX_DIMS` non-negative ints, each frame holds exactly ``prod(shape) * itemsize``
bytes (decompressed), names are unique strings, the whole message and its decompressed
arrays are at most ``max_bytes`` each, meta nests at most
:data:`~tmrl2.net.kinds.MAX_META_DEPTH` levels, and meta and arrays follow the rules of their
kind (:mod:`tmrl2.net.kinds`). Anything else raises :class:`DecodeError` saying what was wrong.
A header's ``arrays`` list is validated once per distinct list (:func:`_layout`, keyed by its
exact ``repr``): a run's chunks share a few layouts, and their later messages only have their
frame sizes checked against it (issue 18: the server's time per chunk). :func:`encode` does
the same for packed messages (:data:`_PACK_LAYOUTS`): a layout of native arrays is described
once, later messages of it are only copied into their frame.

A ``chunks`` batch is the one message whose frames are not its arrays: its header frame is
followed by whole ``chunk`` messages, frames unchanged. :func:`decode` refuses it;
:func:`decode_many` returns its chunks, each validated as a message of its own.

Kinds (meta keys are required; extra meta keys are allowed and ignored):

``hello`` (client -> server)
    meta ``{"role": "worker" | "trainer", "name": str, "protocol": int}``, optionally
    ``"config_hash": str`` (the server refuses a hash that differs from its own),
    ``"run_token": str`` (a server started with a run token refuses any other: another run's
    client), ``"session": str`` (random per client process start), ``"weights_version": int``
    (a worker's: the server sends its weights on hello only when newer) and, from the trainer
    only, ``"spec": {name: [dtype_str, [dims...]]}`` (every array a chunk of the run carries,
    with its per-row shape; the server rejects chunks that differ); no arrays.
``welcome`` (server -> client)
    meta ``{"protocol": int, "server": str}``, optionally ``"config_hash": str``,
    ``"config": map`` (the run's resolved config, when the server holds it),
    ``"weights_version": int`` (the latest the server saw), ``"session": str`` (the server's
    own random id: a new one means the server restarted) and, to a worker,
    ``"chunk_credit": int`` (chunks it may send before the server returns credit); no arrays.
    A trainer's hello may also set ``"server_stats": true`` (see ``stats``) and
    ``"batch_chunks": int`` in ``[1, MAX_BATCH_CHUNKS]`` (see ``chunks``).
``refused`` (server -> client)
    meta ``{"reason": str}``, optionally ``"code": str`` (one of
    :data:`~tmrl2.net.kinds.REFUSAL_CODES`: ``protocol``, ``config``, ``token``, ``auth``,
    ``role``, ``name_taken``, ``trainer_taken``, ``rate``); no arrays. The connection is not
    usable.
``rejoin`` (server -> client)
    meta ``{"reason": str}``; no arrays. The server does not know this peer (it restarted, or
    forgot the peer): the client must send its ``hello`` again. A :class:`ClientSocket` made
    with ``hello=`` does that by itself.
``chunk`` (worker -> server -> trainer)
    Experience. Arrays ``obs/<key>`` and ``next_obs/<key>`` per part of a Dict observation
    (``obs``/``next_obs`` for a Box), ``action``, ``reward``, ``terminated``, ``truncated``,
    all with the same first dimension ``n``. Meta ``{"worker": str, "policy_version": int,
    "n": int > 0, "episodes": [{"return": float, "steps": int, "finished": bool,
    "lap_time_s": float | None, "progress_frac": float}, ...]}`` (episodes that ended in it;
    numbers finite, a lap time positive), optionally ``"session": str``, ``"seq": int >= 1``
    and ``"sent": int >= n`` (the worker session's cumulative transitions, for loss
    accounting).
``chunks`` (server -> trainer, when its hello set ``batch_chunks`` > 1)
    Several chunks in one multipart message: meta ``{"frames": [int, ...]}`` (2 to
    :data:`~tmrl2.net.kinds.MAX_BATCH_CHUNKS` entries, each >= 2: the number of frames of one
    chunk message, header included), no arrays, no ``"z"``; the header frame is followed by
    each chunk's frames as its worker sent them, in order (no copy, no re-encoding). The
    server never puts more than ``batch_chunks`` chunks, the trainer's credit or
    ``max_message_bytes`` in one; ``max_bytes`` applies to each chunk. A
    :class:`~tmrl2.net.transport.ClientSocket` returns its chunks one by one.
``credit`` (trainer -> server, server -> worker)
    meta ``{"n": int > 0}``: the receiver may send ``n`` more chunks; no arrays.
``weights`` (trainer -> server -> workers)
    Arrays: the actor's state_dict as numpy arrays (names are its keys).
    Meta ``{"version": int, "updates": int}``, optionally ``"session": str``.
``state`` (trainer -> server -> every worker)
    meta ``{"session": str, "updates": int, "samples": int, "ready": bool,
    "weights_version": int}``; no arrays. The trainer's progress, for the workers' pacing;
    the server keeps only the latest and sends it to each worker once (new ones right after
    their ``welcome``).
``stats`` (trainer -> server, optional; server -> trainer when asked)
    meta: a flat map of counters; no arrays. The server sends the trainer its queue depth and
    drop counters (``queued_chunks``, ``chunks_dropped``, ``over_credit``, ``rejected``,
    ``malformed``) about once a second when the trainer's ``hello`` sets ``server_stats``.
``ping`` (client -> server, or server -> client)
    meta ``{}``; no arrays. From a client it keeps the peer seen; from the server it is a
    liveness probe that clients ignore.
``bye`` (client -> server)
    meta ``{}``; no arrays. Unregisters the peer.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union, cast

import lz4.block
import msgpack
import numpy as np

from tmrl2.net.errors import DecodeError, ProtocolError
from tmrl2.net.kinds import KINDS, MAX_BATCH_CHUNKS, check_message, check_meta_values

if TYPE_CHECKING:
    import zmq

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DTYPES",
    "KINDS",
    "MAX_DIMS",
    "PROTOCOL_VERSION",
    "COMPRESSIONS",
    "Buffer",
    "Message",
    "decode",
    "decode_many",
    "encode",
]

PROTOCOL_VERSION = 2
"""Version of the wire format and of the kinds' rules; peers must agree on it exactly (2:
packed messages, ``"p"``)."""

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Largest message (all frames together) :func:`decode` accepts unless told otherwise."""

MAX_DIMS = 8
"""Most dimensions an array may have."""

MAX_DIM_SIZE = 2**32
"""Bound on each dimension (only empty arrays could otherwise claim absurd sizes)."""

MAX_ARRAYS = 1024
"""Most arrays in one message."""

MAX_ARRAY_NAME_CHARS = 256
"""Longest array name."""

_ALLOWED_DTYPES = (
    "bool",
    "uint8",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint16",
    "uint32",
    "float16",
    "float32",
    "float64",
)
DTYPES: dict[str, np.dtype[Any]] = {
    dtype.str: dtype for dtype in (np.dtype(name).newbyteorder("<") for name in _ALLOWED_DTYPES)
}
"""Allowed dtypes by their wire string (numpy's ``dtype.str``, little-endian: ``'<f4'``)."""

COMPRESSIONS = frozenset({"lz4"})
"""Values of the optional header key ``"z"``: how the array frames are compressed."""

_HEADER_KEYS = frozenset({"v", "kind", "meta", "arrays"})
_HEADER_KEYS_Z = _HEADER_KEYS | {"z"}
_HEADER_KEYS_P = _HEADER_KEYS | {"p"}

PACK_MAX_BYTES = 64 * 1024
"""Largest total of array bytes :func:`encode` packs into one frame (a copy at the sender);
above it every array keeps its own zero-copy frame. Measured (docs/networking.md): packing a
23 kB LIDAR chunk lowers the server's CPU per chunk; packing a 432 kB compact-image chunk cost
a third of its throughput (99-118k against 154-184k samples/s), so those stay unpacked."""
PACK_ALIGN = 8
"""Alignment of each array in a packed frame (the largest itemsize)."""


def _aligned(offset: int) -> int:
    return -(-offset // PACK_ALIGN) * PACK_ALIGN


Buffer = Union[bytes, bytearray, memoryview, "zmq.Frame"]
"""A frame: anything exposing the buffer protocol (bytes, memoryview, zmq.Frame)."""


@dataclass
class Message:
    """One message: its kind, a msgpack-able meta map and named numpy arrays."""

    kind: str
    """One of :data:`KINDS`."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Small structured data: msgpack scalars, strings, lists and str-keyed maps."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Bulk data sent as raw buffers. Decoded arrays are zero-copy views of the received
    frames (writable only where the frame is; each view keeps its frame alive)."""


_WIRE_DTYPES: dict[np.dtype[Any], str] = {dtype: wire for wire, dtype in DTYPES.items()}


def _wire_array(name: str, array: np.ndarray) -> tuple[list[Any], memoryview]:
    if type(name) is not str or not 0 < len(name) <= MAX_ARRAY_NAME_CHARS:
        raise ValueError(f"array name must be a str of 1 to {MAX_ARRAY_NAME_CHARS} chars: {name!r}")
    array = np.asarray(array)
    wire = _WIRE_DTYPES.get(array.dtype)
    if wire is None:  # big-endian, or not allowed at all
        wire = array.dtype.newbyteorder("<").str
        if wire not in DTYPES:
            raise TypeError(f"array {name!r} has dtype {array.dtype}; allowed: {sorted(DTYPES)}")
        array = array.astype(DTYPES[wire])
    if array.ndim > MAX_DIMS:
        raise ValueError(f"array {name!r} has {array.ndim} dims, at most {MAX_DIMS} allowed")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)  # the only other copy; ndim >= 1 here
    data = memoryview(cast(Any, array)).cast("B") if array.size else memoryview(b"")
    return [name, wire, list(array.shape)], data


def encode(msg: Message, compress: str | None = None) -> list[bytes | memoryview]:
    """Frames of ``msg``: the msgpack header, then one buffer per array (views, no copies).

    Args:
        msg: the message.
        compress: None sends raw array frames; ``"lz4"`` compresses each of them (copies).

    Raises ``ValueError``/``TypeError`` for a message that :func:`decode` would reject, so a
    bug shows at the sender rather than as a dropped message at the receiver.
    """
    if compress is not None and compress not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compress!r}; known: {sorted(COMPRESSIONS)}")
    try:
        check_meta_values(msg.meta)
        check_message(msg.kind, msg.meta, msg.arrays)
    except DecodeError as exc:
        raise ValueError(f"cannot encode this {msg.kind!r} message: {exc}") from exc
    if compress is None and len(msg.arrays) > 1:
        packed = _pack_known(msg.arrays)
        if packed is not None:
            header = {"v": PROTOCOL_VERSION, "kind": msg.kind, "meta": msg.meta}
            header |= {"arrays": packed[0], "p": 1}
            return [msgpack.packb(header, use_bin_type=True), memoryview(packed[1])]
    specs: list[list[Any]] = []
    datas: list[memoryview] = []
    for name, array in msg.arrays.items():
        spec, data = _wire_array(name, array)
        specs.append(spec)
        datas.append(data)
    header = {"v": PROTOCOL_VERSION, "kind": msg.kind, "meta": msg.meta, "arrays": specs}
    frames: list[bytes | memoryview]
    if compress:
        header["z"] = compress
        frames = [lz4.block.compress(data, store_size=False) for data in datas]
    elif len(datas) > 1 and sum(map(len, datas)) <= PACK_MAX_BYTES:
        header["p"] = 1
        frames = [memoryview(_pack(datas))]
    else:
        frames = list(datas)
    return [msgpack.packb(header, use_bin_type=True), *frames]


PackLayout = tuple[list[list[Any]], list[tuple[int, int]], int, int]
"""A packed message's header ``arrays`` specs, each array's ``(start, end)`` in the frame, the
frame's size and the arrays' bytes (what :data:`PACK_MAX_BYTES` is compared with)."""

_PACK_LAYOUTS: dict[tuple[Any, ...], PackLayout] = {}
"""Layouts (name, dtype and shape per array) of native, wire-ready arrays -> how they pack:
a worker's chunks share one or two, so :func:`encode` describes them once (issue 18: a third
of the encoding of a LIDAR chunk was describing its ten arrays)."""

MAX_PACK_LAYOUTS = 256
"""Most layouts :data:`_PACK_LAYOUTS` keeps (a sender inventing layouts must not grow it)."""


def _pack_known(arrays: dict[str, np.ndarray]) -> tuple[list[list[Any]], bytearray] | None:
    """Header specs and packed frame of ``arrays`` when they are numpy arrays of wire dtypes
    whose layout packs (at most :data:`PACK_MAX_BYTES`), from a layout described once; None
    otherwise (then :func:`encode` takes its general path, which raises what is wrong)."""
    parts: list[tuple[str, np.dtype[Any], tuple[int, ...]]] = []
    for name, array in arrays.items():
        if type(array) is not np.ndarray:
            return None
        parts.append((name, array.dtype, array.shape))
    key = tuple(parts)
    layout = _PACK_LAYOUTS.get(key)
    if layout is None:
        layout = _describe_pack(arrays)
        if layout is None:
            return None
        if len(_PACK_LAYOUTS) >= MAX_PACK_LAYOUTS:
            _PACK_LAYOUTS.clear()
        _PACK_LAYOUTS[key] = layout
    specs, spans, end, size = layout
    if size > PACK_MAX_BYTES:
        return None
    body = bytearray(end)
    for (start, stop), array in zip(spans, arrays.values(), strict=True):
        if stop > start:
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)
            body[start:stop] = memoryview(cast(Any, array)).cast("B")
    return specs, body


def _describe_pack(arrays: dict[str, np.ndarray]) -> PackLayout | None:
    """How ``arrays`` pack, or None when one needs a conversion (a big-endian dtype) or
    breaks a rule (:func:`_wire_array` says which on the general path)."""
    if any(array.dtype not in _WIRE_DTYPES for array in arrays.values()):
        return None
    try:
        described = [_wire_array(name, array) for name, array in arrays.items()]
    except (TypeError, ValueError):
        return None
    lengths = [len(data) for _, data in described]
    spans, end = _spans(lengths)
    return [spec for spec, _ in described], spans, end, sum(lengths)


def _spans(lengths: list[int]) -> tuple[list[tuple[int, int]], int]:
    """Where each of buffers of ``lengths`` bytes lies in a packed frame (``(start, end)``,
    each start at the next multiple of :data:`PACK_ALIGN`), and the frame's size."""
    spans, end = [], 0
    for length in lengths:
        start = _aligned(end)
        end = start + length
        spans.append((start, end))
    return spans, end


def _pack(datas: list[memoryview]) -> bytearray:
    """``datas`` in one zero-filled buffer, each at the next multiple of :data:`PACK_ALIGN`."""
    spans, end = _spans([len(data) for data in datas])
    body = bytearray(end)
    for (start, stop), data in zip(spans, datas, strict=True):
        body[start:stop] = data
    return body


def _unpack_header(frame: memoryview) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several types for garbage; all mean the same
        raise DecodeError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(header, dict):
        raise DecodeError(f"header must be a msgpack map, got {type(header).__name__}")
    if "v" not in header:
        raise DecodeError(f"header lacks the protocol version 'v' (keys: {_keys(header)})")
    version = header["v"]
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(
            f"peer speaks protocol version {version!r}, this side speaks {PROTOCOL_VERSION}: "
            "install the same tmrl2 version on every machine"
        )
    keys = header.keys()
    if keys != _HEADER_KEYS and keys != _HEADER_KEYS_Z and keys != _HEADER_KEYS_P:
        extra = keys - _HEADER_KEYS_Z - _HEADER_KEYS_P
        missing = _HEADER_KEYS - keys
        if not extra and not missing:
            raise DecodeError("header has both z and p: a packed message is not compressed")
        raise DecodeError(f"header keys wrong: missing {_keys(missing)}, unknown {_keys(extra)}")
    codec = header.get("z")
    if codec is not None and (type(codec) is not str or codec not in COMPRESSIONS):
        raise DecodeError(f"header z {codec!r} is not a known compression: {sorted(COMPRESSIONS)}")
    if "p" in header and (type(header["p"]) is not int or header["p"] != 1):
        raise DecodeError(f"header p must be 1 (packed arrays), got {_short(header['p'])}")
    kind = header["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise DecodeError(f"unknown message kind {kind!r}; known kinds: {sorted(KINDS)}")
    if not isinstance(header["meta"], dict):
        raise DecodeError(f"header meta must be a map, got {type(header['meta']).__name__}")
    check_meta_values(header["meta"])
    if not isinstance(header["arrays"], list):
        raise DecodeError(f"header arrays must be a list, got {type(header['arrays']).__name__}")
    return header


def _keys(keys: Any) -> list[str]:
    # msgpack map keys may be str or bytes; sorting a mix of both would raise TypeError
    return sorted(key if isinstance(key, str) else repr(key) for key in keys)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 4, 16, 300, 300


def _short(value: Any) -> str:
    """``repr`` for an error message, cut short: a hostile header may nest lists a thousand
    levels deep, where ``repr`` itself raises ``RecursionError``."""
    return _REPR.repr(value)


def _array_spec(spec: Any, index: int) -> tuple[str, np.dtype[Any], tuple[int, ...]]:
    # exact type checks: msgpack yields exactly these types, and bool is not an int here
    if type(spec) is not list or len(spec) != 3:
        raise DecodeError(f"array spec {index} must be [name, dtype, shape], got {_short(spec)}")
    name, dtype_str, shape = spec
    if type(name) is not str or not 0 < len(name) <= MAX_ARRAY_NAME_CHARS:
        raise DecodeError(f"array {index} name must be a non-empty short str, got {_short(name)}")
    dtype = DTYPES.get(dtype_str) if type(dtype_str) is str else None
    if dtype is None:
        raise DecodeError(f"array {name!r} dtype {_short(dtype_str)} not allowed: {sorted(DTYPES)}")
    if type(shape) is not list or len(shape) > MAX_DIMS:
        raise DecodeError(
            f"array {name!r} shape must be a list of <= {MAX_DIMS} ints: {_short(shape)}"
        )
    for dim in shape:
        if type(dim) is not int or not 0 <= dim < MAX_DIM_SIZE:
            raise DecodeError(f"array {name!r} shape {shape!r} has a bad dimension {dim!r}")
    return name, dtype, tuple(shape)


def decode(frames: Sequence[Buffer], max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """The message held by ``frames``, validated; its arrays are views of the frames.

    Raises :class:`DecodeError` for any malformed message (a ``chunks`` batch included: read
    those with :func:`decode_many`) and :class:`ProtocolError` when the peer speaks another
    protocol version.
    """
    views = _byte_views(frames)
    _check_total(views, max_bytes)
    header = _unpack_header(views[0])
    if header["kind"] == "chunks":
        raise DecodeError("a 'chunks' batch is not a single message")
    return _message(header, views, max_bytes)


def decode_many(frames: Sequence[Buffer], max_bytes: int = DEFAULT_MAX_BYTES) -> list[Message]:
    """The messages held by ``frames``: the chunks of a ``chunks`` batch, in order, each
    validated as :func:`decode` validates a message of its own (``max_bytes`` applies to each),
    or the one message of any other kind. Raises like :func:`decode`; one bad chunk fails the
    whole batch (a server that checked them never sends one)."""
    views = _byte_views(frames)
    _check_total(views, max_bytes * MAX_BATCH_CHUNKS)
    header = _unpack_header(views[0])
    if header["kind"] != "chunks":
        _check_total(views, max_bytes)
        return [_message(header, views, max_bytes)]
    if header["arrays"] or "z" in header or "p" in header:
        raise DecodeError("a 'chunks' batch header lists no arrays, no compression, no packing")
    check_message("chunks", header["meta"], {})
    counts: list[int] = header["meta"]["frames"]
    if sum(counts) != len(views) - 1:
        raise DecodeError(f"chunks announces {sum(counts)} frames but {len(views) - 1} follow")
    messages, first = [], 1
    for count in counts:
        part = views[first : first + count]
        first += count
        _check_total(part, max_bytes)
        part_header = _unpack_header(part[0])
        if part_header["kind"] != "chunk":
            raise DecodeError(f"a 'chunks' batch holds a {part_header['kind']!r} message")
        messages.append(_message(part_header, part, max_bytes))
    return messages


def _byte_views(frames: Sequence[Buffer]) -> list[memoryview]:
    if len(frames) == 0:
        raise DecodeError("empty message: no header frame")
    try:
        # flat byte views; cast raises TypeError for a buffer that is not C-contiguous
        return [memoryview(cast(Any, frame)).cast("B") for frame in frames]
    except TypeError as exc:
        raise DecodeError(f"a frame is not a contiguous byte buffer: {exc}") from exc


def _check_total(views: list[memoryview], max_bytes: int) -> None:
    total = sum(map(len, views))
    if total > max_bytes:
        raise DecodeError(
            f"message of {total} bytes exceeds the limit of {max_bytes} bytes "
            "(raise max_message_bytes if such messages are expected)"
        )


def _message(header: dict[str, Any], views: list[memoryview], max_bytes: int) -> Message:
    """The message of a checked ``header`` and its frames' ``views`` (header frame first)."""
    specs = header["arrays"]
    if "p" in header:
        if len(specs) > MAX_ARRAYS or len(views) != 2:
            raise DecodeError(
                f"a packed message has one frame after its header, got {len(views) - 1}"
            )
        arrays = _packed_arrays(specs, views[1])
    else:
        if len(specs) > MAX_ARRAYS or len(specs) != len(views) - 1:
            raise DecodeError(
                f"header lists {len(specs)} arrays but {len(views) - 1} frames follow"
            )
        compressed = "z" in header
        layout = None if compressed else _layout(specs)
        if layout is not None:  # the usual case: raw frames of a known layout, unique names
            arrays = _layout_arrays(layout, views[1:])
        else:
            arrays = _parsed_arrays(specs, views[1:], compressed, max_bytes)
    kind, meta = header["kind"], header["meta"]
    check_message(kind, meta, arrays)
    return Message(kind, meta, arrays)


def _layout_arrays(layout: Layout, views: list[memoryview]) -> dict[str, np.ndarray]:
    """Arrays over raw frames whose header's layout :func:`_layout` validated."""
    arrays: dict[str, np.ndarray] = {}
    for (name, dtype, shape, expected, _), view in zip(layout, views, strict=True):
        if len(view) != expected:
            raise DecodeError(
                f"array {name!r} frame holds {len(view)} bytes, "
                f"shape {list(shape)} of {dtype.str} needs {expected}"
            )
        arrays[name] = np.ndarray(shape, dtype, view)  # a view of the frame, no copy
    return arrays


def _packed_arrays(specs: list[Any], body: memoryview) -> dict[str, np.ndarray]:
    """Arrays over the one frame of a packed message (offsets as :func:`_pack` lays them)."""
    layout = _layout(specs)
    if layout is None:  # repeated names (or absurd nesting): say which
        parsed = [_array_spec(spec, index) for index, spec in enumerate(specs)]
        names = [name for name, _, _ in parsed]
        twice = next((name for name in names if names.count(name) > 1), "?")
        raise DecodeError(f"array name {twice!r} appears twice")
    end = layout[-1][4] + layout[-1][3] if layout else 0
    if len(body) != end:
        raise DecodeError(f"packed frame holds {len(body)} bytes, its arrays need {end}")
    # views of the frame at the offsets the layout computed once: no copy, no arithmetic
    return {name: np.ndarray(shape, dtype, body, at) for name, dtype, shape, _, at in layout}


def _parsed_arrays(
    specs: list[Any], views: list[memoryview], compressed: bool, max_bytes: int
) -> dict[str, np.ndarray]:
    """Arrays of any header (compressed, repeated names): every entry checked here."""
    parsed = [_array_spec(spec, index) for index, spec in enumerate(specs)]
    if compressed:
        announced = sum(math.prod(shape) * dtype.itemsize for _, dtype, shape in parsed)
        if announced > max_bytes:  # checked before decompressing anything
            raise DecodeError(
                f"compressed message announces {announced} bytes of arrays, over the limit of "
                f"{max_bytes} bytes"
            )
    arrays: dict[str, np.ndarray] = {}
    for (name, dtype, shape), view in zip(parsed, views, strict=True):
        if name in arrays:
            raise DecodeError(f"array name {name!r} appears twice")
        expected = math.prod(shape) * dtype.itemsize
        data = _decompress(name, view, expected) if compressed else view
        if data.nbytes != expected:
            raise DecodeError(
                f"array {name!r} frame holds {data.nbytes} bytes, "
                f"shape {list(shape)} of {dtype.str} needs {expected}"
            )
        arrays[name] = np.ndarray(shape, dtype, data)  # a view of the frame, no copy
    return arrays


Layout = tuple[tuple[str, np.dtype[Any], tuple[int, ...], int, int], ...]
"""A validated ``arrays`` list of a header: (name, dtype, shape, bytes, offset in a packed
frame) per array."""

MAX_LAYOUTS = 256
"""Most array layouts :func:`_layout` remembers (a run has a handful: one per chunk shape)."""
MAX_LAYOUT_KEY_BYTES = 8192
"""Longest layout key :func:`_layout` remembers (a chunk's is about 250 bytes; a large
state_dict's goes the uncached way), so the cache stays under a few megabytes."""

_LAYOUTS: dict[bytes, Layout | None] = {}


def _layout(specs: list[Any]) -> Layout | None:
    """The validated layout of a header's ``arrays`` list, from a cache keyed by the list
    packed again with msgpack (exact: it tells ``1`` from ``True`` and ``1.0``, ``'a'`` from
    ``b'a'``; 3 us where ``repr`` took 13), so that the chunks of a run, which all share a few
    layouts, skip :func:`_array_spec` per array. None for a list with repeated names or one
    msgpack cannot pack back (:func:`decode`'s general path reports them). Raises
    :class:`DecodeError` like :func:`_array_spec` for a bad entry (nothing is cached then)."""
    try:
        key = msgpack.packb(specs, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):  # absurd nesting: the uncached way refuses
        return None
    if key in _LAYOUTS:
        return _LAYOUTS[key]
    parsed = [_array_spec(spec, index) for index, spec in enumerate(specs)]
    unique = len({name for name, _, _ in parsed}) == len(parsed)
    layout: Layout | None = None
    if unique:
        entries, end = [], 0
        for name, dt, shape in parsed:
            size = math.prod(shape) * dt.itemsize
            offset = _aligned(end)  # where a packed frame holds it (:func:`_pack`)
            entries.append((name, dt, shape, size, offset))
            end = offset + size
        layout = tuple(entries)
    if len(key) <= MAX_LAYOUT_KEY_BYTES:
        if len(_LAYOUTS) >= MAX_LAYOUTS:  # a peer inventing layouts must not grow it
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


def _decompress(name: str, frame: memoryview, expected: int) -> memoryview:
    try:
        data = lz4.block.decompress(frame, uncompressed_size=expected)
    except Exception as exc:  # LZ4BlockError, or ValueError for absurd sizes
        raise DecodeError(f"array {name!r} frame is not valid lz4 data: {exc}") from exc
    return memoryview(data)
