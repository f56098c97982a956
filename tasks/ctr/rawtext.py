"""Vectorised parsing of delimited text files, block by block, with line-numbered errors.

A file is read in binary blocks that end at a line break (bounded memory whatever the file's
size). In a block, the byte positions of the separators give every field's [start, end) range at
once, so counting columns, parsing integers and decoding hex values are numpy operations over all
rows, with no per-row Python. Any malformed line raises ValueError naming the file, the line and
the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_NEWLINE, _CR, _MINUS = 10, 13, ord("-")
_MAX_DIGITS = 18  # every integer of up to 18 digits fits int64

_HEX = np.full(256, 255, dtype=np.uint8)
for _value, _char in enumerate("0123456789abcdef"):
    _HEX[ord(_char)] = _value
    _HEX[ord(_char.upper())] = _value


def iter_blocks(
    path: str | Path, block_bytes: int = 1 << 26, max_lines: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Complete lines of `path` in blocks: (number of the block's first line, uint8 bytes).

    Every block but the last ends with a line break. With `max_lines`, reading stops after that
    many lines.
    """
    line, carry = 1, b""
    with open(path, "rb") as handle:
        while max_lines is None or line <= max_lines:
            chunk = handle.read(block_bytes)
            buffer = carry + chunk
            if not chunk:
                cut = len(buffer)  # the last line, without a trailing line break
            else:
                cut = buffer.rfind(b"\n") + 1
                if cut == 0:
                    carry = buffer
                    continue
            carry = buffer[cut:]
            data = np.frombuffer(buffer, dtype=np.uint8, count=cut)
            if data.size == 0:
                return
            breaks = np.flatnonzero(data == _NEWLINE)
            if max_lines is not None and line - 1 + breaks.size >= max_lines:
                keep = max_lines - (line - 1)  # lines still wanted, <= breaks.size
                yield line, data[: breaks[keep - 1] + 1]
                return
            yield line, data
            line += breaks.size + (0 if data[-1] == _NEWLINE else 1)
            if not chunk:
                return


def count_lines(path: str | Path, block_bytes: int = 1 << 26) -> int:
    """The number of lines of `path` (a last line without a line break counts)."""
    lines, last = 0, _NEWLINE
    with open(path, "rb") as handle:
        while chunk := handle.read(block_bytes):
            lines += chunk.count(b"\n")
            last = chunk[-1]
    return lines + (last != _NEWLINE)


@dataclass
class Block:
    """Rows of one block: field k of row i is data[starts[i, k]:ends[i, k]]."""

    path: str
    first_line: int
    data: np.ndarray  # uint8 [bytes]
    starts: np.ndarray  # int64 [rows, columns]
    ends: np.ndarray  # int64 [rows, columns]

    @property
    def rows(self) -> int:
        return self.starts.shape[0]

    def text(self, row: int, column: int) -> str:
        raw = self.data[self.starts[row, column] : self.ends[row, column]].tobytes()
        return raw.decode("latin-1")

    def error(self, row: int, reason: str) -> ValueError:
        return ValueError(f"{self.path}, line {self.first_line + int(row)}: {reason}")


def split_block(
    path: str | Path,
    first_line: int,
    data: np.ndarray,
    sep: str,
    columns: int,
    doubled: bool = False,
) -> Block:
    """Cut a block of lines into `columns` fields at the one-byte separator `sep`.

    With `doubled`, the file's separator is `sep` twice (MovieLens' '::'): the block is cut into
    2 * columns - 1 pieces, the odd ones being the empty gaps between the two bytes (the caller
    checks them). Raises ValueError naming the first line with another number of columns (an
    empty line too).
    """
    shown = sep * 2 if doubled else sep
    pieces = 2 * columns - 1 if doubled else columns
    sep_byte = ord(sep)
    line_end = np.flatnonzero(data == _NEWLINE)
    if data.size and data[-1] != _NEWLINE:
        line_end = np.append(line_end, data.size)
    line_start = np.concatenate(([0], line_end[:-1] + 1)).astype(np.int64)
    has_cr = (line_end > line_start) & (data[np.maximum(line_end - 1, 0)] == _CR)
    line_end = line_end - has_cr  # Windows line breaks
    seps = np.flatnonzero(data == sep_byte)
    found = np.searchsorted(seps, line_end) - np.searchsorted(seps, line_start) + 1
    bad = np.flatnonzero(found != pieces)
    if bad.size:
        row = int(bad[0])
        count = (found[row] + 1) // 2 if doubled else found[row]
        what = "an empty line" if line_end[row] == line_start[row] else f"{count} columns"
        raise ValueError(
            f"{path}, line {first_line + row}: expected {columns} columns separated by "
            f"{shown!r}, found {what}"
        )
    inner = seps.reshape(line_start.size, pieces - 1)  # [rows, pieces - 1]
    starts = np.column_stack((line_start, inner + 1))  # [rows, pieces]
    ends = np.column_stack((inner, line_end))  # [rows, pieces]
    return Block(str(path), first_line, data, starts, ends)


def parse_int(block: Block, columns: list[int], names: list[str], allow_empty: bool = False):
    """Decimal integers of some columns: (int64 values [rows, k], bool empty [rows, k]).

    Empty fields give value 0 and empty=True when `allow_empty`, else raise ValueError.
    """
    data = block.data
    last = max(data.size - 1, 0)
    start = block.starts[:, columns].ravel()  # [rows * k], row-major
    width = block.ends[:, columns].ravel() - start
    empty = width == 0
    if not allow_empty and empty.any():
        flat = int(np.argmax(empty))
        raise block.error(flat // len(columns), f"{names[flat % len(columns)]} is empty")
    negative = ~empty & (data[np.minimum(start, last)] == _MINUS)
    start, width = start + negative, width - negative
    values = np.zeros(start.size, dtype=np.int64)
    widest = int(width.max()) if width.size else 0
    bad = (negative & (width == 0)) | (width > _MAX_DIGITS)
    for k in range(min(widest, _MAX_DIGITS)):
        active = width > k
        digit = data[np.where(active, start + k, 0)].astype(np.int64) - ord("0")
        bad |= active & ((digit < 0) | (digit > 9))
        values = np.where(active, values * 10 + digit, values)
    if bad.any():
        flat = int(np.argmax(bad))
        row, k = divmod(flat, len(columns))
        text = block.text(row, columns[k])
        raise block.error(row, f"{names[k]} {text!r} is not an integer")
    values = np.where(negative, -values, values)
    shape = (block.rows, len(columns))
    return values.reshape(shape), empty.reshape(shape)


def parse_hex32(block: Block, columns: list[int], names: list[str]) -> np.ndarray:
    """8-digit hex values of some columns as int64 [rows, k]; an empty field gives -1."""
    nibbles = _HEX[block.data]  # [bytes], 255 where not a hex digit
    last = max(nibbles.size - 1, 0)
    start = block.starts[:, columns].ravel()  # [rows * k], row-major
    width = block.ends[:, columns].ravel() - start
    empty = width == 0
    bad = ~empty & (width != 8)
    values = np.zeros(start.size, dtype=np.uint32)
    for k in range(8):
        nibble = nibbles[np.minimum(start + k, last)]
        bad |= ~empty & (nibble > 15)
        values = (values << 4) | (nibble & 15)
    if bad.any():
        flat = int(np.argmax(bad))
        row, k = divmod(flat, len(columns))
        text = block.text(row, columns[k])
        raise block.error(row, f"{names[k]} {text!r} is not 8 hex digits (nor empty)")
    values = np.where(empty, -1, values.astype(np.int64))
    return values.reshape(block.rows, len(columns))
