"""FrameMeter reads frame headers however the bytes are cut into reads."""

from __future__ import annotations

import os
import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from common.ws_frames import FrameMeter


class Recorder:
    def __init__(self) -> None:
        self.received = b""

    def feed_data(self, data: Any) -> tuple[bool, bytes]:
        self.received += bytes(data)
        return False, b""

    def feed_eof(self) -> None:
        pass


def frame(opcode: int, size: int, *, fin: bool) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    return head + os.urandom(4) + b"\x00" * size


FRAMES = st.lists(
    st.tuples(
        st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]),
        st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000]),
        st.booleans(),
    ),
    max_size=12,
)


@given(frames=FRAMES, cuts=st.lists(st.integers(min_value=1, max_value=70000), max_size=30))
def test_every_frame_the_loop_will_not_see_is_counted_once(
    frames: list[tuple[int, int, bool]], cuts: list[int]
) -> None:
    stream = b"".join(frame(opcode, size, fin=fin) for opcode, size, fin in frames)
    expected = sum(
        1 for opcode, _, fin in frames if opcode != 0x8 and not (fin and opcode in (0, 1, 2))
    )
    reader = Recorder()
    meter = FrameMeter(reader)
    counted = 0

    def listener() -> bool:
        nonlocal counted
        counted += 1
        return True

    meter.attach(listener)
    pos = 0
    for cut in [*cuts, len(stream)]:
        meter.feed_data(stream[pos : pos + cut])
        pos += cut
        if pos >= len(stream):
            break
    assert counted == expected
    assert reader.received == stream


def test_frames_before_a_listener_are_reported_when_it_attaches() -> None:
    meter = FrameMeter(Recorder())
    meter.feed_data(frame(0x9, 0, fin=True) * 3 + frame(0x1, 2, fin=True))
    answers = iter([True, False, True])
    meter.attach(lambda: next(answers))
    assert meter.blocked  # the second report refused: nothing more is read
    assert meter.feed_data(frame(0x1, 2, fin=True)) == (False, b"")
