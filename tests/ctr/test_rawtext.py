"""Block reading and vectorised field parsing (tasks.ctr.rawtext)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.ctr import rawtext


def blocks(path, block_bytes, max_lines=None):
    return [
        (line, data.tobytes()) for line, data in rawtext.iter_blocks(path, block_bytes, max_lines)
    ]


def test_blocks_end_at_line_breaks_and_keep_a_last_line_without_one(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"a\tb\nccc\td\ne\tf")
    got = blocks(path, 5)
    assert b"".join(data for _, data in got) == path.read_bytes()
    assert all(data.endswith(b"\n") for _, data in got[:-1])
    assert [line for line, _ in got] == [1, 2, 3]
    assert rawtext.count_lines(path) == 3
    assert b"".join(d for _, d in blocks(path, 100, max_lines=2)) == b"a\tb\nccc\td\n"


def test_split_and_parse(tmp_path):
    data = np.frombuffer(b"12\t-7\t\r\n0\t3\tdeadBEEF\n", dtype=np.uint8)
    block = rawtext.split_block("f", 1, data, "\t", 3)
    assert block.rows == 2 and block.text(1, 2) == "deadBEEF"
    values, empty = rawtext.parse_int(block, [0, 1], ["a", "b"])
    assert values.tolist() == [[12, -7], [0, 3]] and not empty.any()
    assert rawtext.parse_hex32(block, [2], ["c"]).tolist() == [[-1], [0xDEADBEEF]]
    with pytest.raises(ValueError, match="f, line 1: c is empty"):
        rawtext.parse_int(block, [2], ["c"])
    with pytest.raises(ValueError, match=r"f, line 2: c 'deadBEEF' is not an integer"):
        rawtext.parse_int(block, [2], ["c"], allow_empty=True)


def test_too_long_and_lone_minus_are_not_integers():
    data = np.frombuffer(b"1234567890123456789\n-\n", dtype=np.uint8)
    block = rawtext.split_block("f", 1, data, "\t", 1)
    with pytest.raises(ValueError, match="line 1: n '1234567890123456789' is not an integer"):
        rawtext.parse_int(block, [0], ["n"])
    block = rawtext.split_block("f", 2, data[20:], "\t", 1)
    with pytest.raises(ValueError, match="line 2: n '-' is not an integer"):
        rawtext.parse_int(block, [0], ["n"])
