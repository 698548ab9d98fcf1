"""Salvaging the messages of an MCAP file cut short (a recorder killed while writing it).

An MCAP file is written front to back as records (opcode, length, content); ``rosbags`` puts the
schemas, channels and messages inside compressed chunk records and writes the index and summary
only at the end. A cut file therefore holds a run of complete chunk records followed by at most
one truncated record: this module reads the records in order, stops at the first incomplete or
corrupt one, and writes every message it got into a new, complete bag.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

# rosbags' own chunk decompression (zstd/lz4 + CRC check), so no second codec dependency is needed.
from rosbags.rosbag2.storage_mcap import decompress
from rosbags.typesys.store import Typestore

MAGIC = b"\x89MCAP0\r\n"
_SCHEMA, _CHANNEL, _MESSAGE, _CHUNK = 0x03, 0x04, 0x05, 0x06


class _CutError(Exception):
    """The data ends (or turns invalid) inside a record."""


def _take(stream: BytesIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise _CutError
    return data


def _string(stream: BytesIO) -> str:
    (size,) = struct.unpack("<I", _take(stream, 4))
    return _take(stream, size).decode()


def _records(stream: BytesIO) -> Iterator[tuple[int, bytes]]:
    """(opcode, content) of each complete record, until the data ends or a record is cut."""
    while True:
        head = stream.read(9)
        if len(head) < 9:
            return
        opcode, size = struct.unpack("<BQ", head)
        content = stream.read(size)
        if len(content) != size:
            return
        yield opcode, content


def scan(data: bytes) -> tuple[dict[int, str], dict[int, tuple[str, str]], list[tuple[int, int, bytes]]]:
    """Schemas (id -> type name), channels (id -> (topic, schema name)) and messages
    (channel, log time ns, CDR bytes) of an MCAP file's complete records, in file order."""
    if len(data) < len(MAGIC):
        return {}, {}, []  # cut before anything was written
    if not data.startswith(MAGIC):
        raise ValueError("not an MCAP file (bad magic)")
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    messages: list[tuple[int, int, bytes]] = []

    def handle(opcode: int, content: bytes) -> None:
        record = BytesIO(content)
        if opcode == _SCHEMA:
            (sid,) = struct.unpack("<H", _take(record, 2))
            schemas[sid] = _string(record)
        elif opcode == _CHANNEL:
            cid, sid = struct.unpack("<HH", _take(record, 4))
            channels[cid] = (_string(record), schemas.get(sid, ""))
        elif opcode == _MESSAGE:
            cid, _, log_time, _ = struct.unpack("<HIQQ", _take(record, 22))
            messages.append((cid, log_time, record.read()))
        elif opcode == _CHUNK:
            _, _, uncompressed_size, crc = struct.unpack("<QQQI", _take(record, 28))
            compression = _string(record)
            (size,) = struct.unpack("<Q", _take(record, 8))
            inner = decompress(_take(record, size), compression, uncompressed_size, crc)
            for inner_opcode, inner_content in _records(BytesIO(inner)):
                handle(inner_opcode, inner_content)

    stream = BytesIO(data)
    stream.seek(len(MAGIC))
    for opcode, content in _records(stream):
        try:
            handle(opcode, content)
        except Exception:
            break
    return schemas, channels, messages


def salvage_mcap(files: list[Path], target: Path, typestore: Typestore) -> int:
    """Copy every readable message of the (possibly cut) MCAP ``files`` into a new bag at
    ``target`` (rosbag2, MCAP, zstd); returns the number of messages (0: no bag is written).

    Raises:
        ValueError: a file is not MCAP at all (naming it).
    """
    found: list[tuple[str, str, int, bytes]] = []
    for path in files:
        try:
            _, channels, messages = scan(path.read_bytes())
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        found += [(channels[c][0], channels[c][1], t, d) for c, t, d in messages if c in channels]
    found = [m for m in found if m[1] in typestore.types]
    if not found:
        return 0
    writer = Writer(target, version=8, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()
    connections = {}
    for topic, msgtype, stamp, data in sorted(found, key=lambda m: m[2]):
        if topic not in connections:
            connections[topic] = writer.add_connection(topic, msgtype, typestore=typestore)
        writer.write(connections[topic], stamp, data)
    writer.close()
    return len(found)
