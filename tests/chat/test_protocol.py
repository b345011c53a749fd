"""Frame parsing, unit level."""

import pytest

from service.native.frames import Command, ProtocolError, encode, error, parse


def test_parses_each_op() -> None:
    assert parse('{"op":"ping"}', max_text=10) == Command("ping")
    assert parse('{"op":"join","room":"a:b.c-d_1"}', max_text=10) == Command(
        "join", room="a:b.c-d_1"
    )
    assert parse('{"op":"leave","room":"r","ref":7}', max_text=10) == Command("leave", 7, room="r")
    assert parse('{"op":"send","room":"r","text":"hé","ref":"x"}', max_text=10) == Command(
        "send", "x", room="r", text="hé"
    )
    assert parse('{"op":"refresh","token":"t"}', max_text=10) == Command("refresh", token="t")


def test_text_limit_counts_characters() -> None:
    assert parse('{"op":"send","room":"r","text":"' + "é" * 10 + '"}', max_text=10).text == "é" * 10
    with pytest.raises(ProtocolError) as caught:
        parse('{"op":"send","room":"r","text":"' + "é" * 11 + '"}', max_text=10)
    assert caught.value.code == "too_long"


@pytest.mark.parametrize("ref", ["true", "1.5", "9007199254740992", '"' + "r" * 129 + '"', "[]"])
def test_bad_refs_are_refused(ref: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse('{"op":"ping","ref":' + ref + "}", max_text=10)
    assert caught.value.code == "bad_ref"
    assert caught.value.ref is None


def test_error_frames_carry_the_ref_only_when_given() -> None:
    assert error("c", "m") == b'{"type":"error","code":"c","message":"m"}'
    assert error("c", "m", 3) == b'{"type":"error","code":"c","message":"m","ref":3}'


def test_encoding_keeps_unicode_compact() -> None:
    assert encode({"text": "é 😀"}) == '{"text":"é 😀"}'.encode()
