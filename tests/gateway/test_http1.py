import pytest

from ebbtide.gateway.http1 import (
    REQUEST_DROP,
    MalformedMessageError,
    Parser,
    RequestHead,
    ResponseHead,
    Signal,
    forwarded_headers,
)


def events(parser: Parser, *pieces: bytes) -> list[object]:
    seen: list[object] = []
    for piece in pieces:
        parser.feed(piece)
        while (event := parser.next_event()) is not Signal.NEED_DATA:
            seen.append(event)
    return seen


def test_request_with_length_split_anywhere_reads_the_same() -> None:
    raw = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    for cut in range(1, len(raw)):
        seen = events(Parser(requests=True), raw[:cut], raw[cut:])
        head = seen[0]
        assert isinstance(head, RequestHead)
        assert (head.method, head.target, head.host, head.content_length) == (
            b"POST",
            b"/v2/models/m/infer",
            b"x",
            5,
        )
        assert b"".join(e for e in seen if isinstance(e, bytes)) == b"hello"
        assert seen[-1] is Signal.END


def test_chunked_request_is_dechunked_and_trailers_ignored() -> None:
    raw = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    seen = events(Parser(requests=True), raw)
    assert b"".join(e for e in seen if isinstance(e, bytes)) == b"abcde"
    assert seen[-1] is Signal.END


def test_pipelined_requests_come_out_in_order() -> None:
    raw = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n"
    heads = [e for e in events(Parser(requests=True), raw) if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == [b"/a", b"/b"]
    assert [h.keep_alive for h in heads] == [True, False]


def test_http10_keeps_alive_only_when_asked() -> None:
    raw = b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    heads = [e for e in events(Parser(requests=True), raw) if isinstance(e, RequestHead)]
    assert [h.keep_alive for h in heads] == [False, True]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length : 3\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", 400),
    ],
)
def test_ambiguous_or_malformed_requests_are_refused(raw: bytes, status: int) -> None:
    with pytest.raises(MalformedMessageError) as refused:
        events(Parser(requests=True), raw)
    assert refused.value.status == status


def test_head_too_large_is_431() -> None:
    parser = Parser(requests=True, max_head_bytes=64)
    with pytest.raises(MalformedMessageError) as refused:
        events(parser, b"GET / HTTP/1.1\r\nX: " + b"a" * 100)
    assert refused.value.status == 431


def test_response_to_head_has_no_body_whatever_its_length() -> None:
    parser = Parser(requests=False)
    parser.expect_response_to(b"HEAD")
    seen = events(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(seen[0], ResponseHead)
    assert seen[1:] == [Signal.END]
    assert parser.idle


def test_response_without_length_reads_until_close() -> None:
    parser = Parser(requests=False)
    parser.expect_response_to(b"GET")
    seen = events(parser, b"HTTP/1.1 200 OK\r\n\r\nsome", b" more")
    head = seen[0]
    assert isinstance(head, ResponseHead)
    assert not head.keep_alive
    assert not head.has_length
    assert seen[1:] == [b"some", b" more"]
    assert parser.feed_eof() is Signal.END


def test_cut_short_response_is_an_error() -> None:
    parser = Parser(requests=False)
    parser.expect_response_to(b"GET")
    events(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(MalformedMessageError):
        parser.feed_eof()


def test_forwarding_drops_hop_by_hop_and_connection_named_headers() -> None:
    headers = [
        (b"Host", b"x"),
        (b"Connection", b"keep-alive, X-Private"),
        (b"X-Private", b"secret"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Expect", b"100-continue"),
        (b"Content-Length", b"3"),
        (b"X-Request-Id", b"7"),
    ]
    forwarded = forwarded_headers(headers, REQUEST_DROP, frozenset({b"keep-alive", b"x-private"}))
    assert forwarded == b"Host: x\r\nX-Request-Id: 7\r\n"
