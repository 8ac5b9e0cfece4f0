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


def test_header_values_lose_surrounding_whitespace() -> None:
    seen = events(Parser(requests=True), b"GET / HTTP/1.1\r\nHost:  x \t\r\nX-A:\tb  \r\n\r\n")
    head = seen[0]
    assert isinstance(head, RequestHead)
    assert head.headers == [(b"Host", b"x"), (b"X-A", b"b")]
    assert head.host == b"x"


def test_chunked_request_is_dechunked_and_trailers_ignored() -> None:
    raw = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    seen = events(Parser(requests=True), raw)
    head = seen[0]
    assert isinstance(head, RequestHead)
    assert head.chunked
    assert head.headers == [(b"Transfer-Encoding", b"chunked")]
    assert b"".join(e for e in seen if isinstance(e, bytes)) == b"abcde"
    assert seen[-1] is Signal.END


def test_chunked_request_split_anywhere_reads_the_same() -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    for cut in range(1, len(raw)):
        seen = events(Parser(requests=True), raw[:cut], raw[cut:])
        assert b"".join(e for e in seen if isinstance(e, bytes)) == b"abcde"
        assert seen[-1] is Signal.END


def test_pipelined_requests_come_out_in_order() -> None:
    raw = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n"
    heads = [e for e in events(Parser(requests=True), raw) if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == [b"/a", b"/b"]
    assert [h.keep_alive for h in heads] == [True, False]


def test_pipelined_requests_ahead_of_a_bad_one_come_out_first() -> None:
    parser = Parser(requests=True)
    parser.feed(
        b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"
        b"POST /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    seen = [parser.next_event() for _ in range(3)]
    assert [type(e) for e in seen] == [RequestHead, bytes, Signal]
    with pytest.raises(MalformedMessageError) as refused:
        parser.next_event()
    assert refused.value.status == 400
    parser.feed(b"GET /c HTTP/1.1\r\n\r\n")  # nothing more is read after a refusal
    assert parser.next_event() is Signal.NEED_DATA


def test_http10_keeps_alive_only_when_asked() -> None:
    closing = events(Parser(requests=True), b"GET / HTTP/1.0\r\n\r\n")[0]
    asking = events(Parser(requests=True), b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert isinstance(closing, RequestHead)
    assert isinstance(asking[0], RequestHead)
    assert (closing.keep_alive, asking[0].keep_alive) == (False, True)


def test_empty_lines_before_a_request_are_ignored() -> None:
    head = events(Parser(requests=True), b"\r\n\r\nGET /a HTTP/1.1\r\n\r\n")[0]
    assert isinstance(head, RequestHead)
    assert head.target == b"/a"


def test_upgrade_is_not_followed_and_the_connection_closes_after_the_answer() -> None:
    parser = Parser(requests=True)
    seen = events(
        parser,
        b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x00binary",
        b"GET /b HTTP/1.1\r\n\r\n",
    )
    head = seen[0]
    assert isinstance(head, RequestHead)
    assert not head.keep_alive
    assert seen[1:] == [Signal.END]


SMUGGLING_SHAPES = [
    # both framings: which one the replica believes is a coin toss
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    # differing, repeated or listed lengths
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    # whitespace before the colon, folded headers
    (b"POST / HTTP/1.1\r\nContent-Length : 3\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\r\n\tfolded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n folded\r\nX: a\r\n\r\n", 400),
    # obfuscated Transfer-Encoding
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked-x\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding:\x0bchunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    # line ends other than CRLF, control characters
    (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
    # bad chunk sizes
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 400),
    # request lines
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/0.9\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\n\r\n", 400),
    (b"FOO / HTTP/1.1\r\n\r\n", 400),
    (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", 501),
    # a second request after one that closes the connection
    (b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 400),
]


@pytest.mark.parametrize(("raw", "status"), SMUGGLING_SHAPES)
def test_ambiguous_or_malformed_requests_are_refused(raw: bytes, status: int) -> None:
    with pytest.raises(MalformedMessageError) as refused:
        events(Parser(requests=True), raw)
    assert refused.value.status == status
    assert str(refused.value)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "once"),
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", "obs-fold"),
        (b"POST / HTTP/1.1\r\nContent-Length : 3\r\n\r\n", "before the colon"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", "only the chunked"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"GET / HTTP/2.0\r\n\r\n", "HTTP/2.0"),
    ],
)
def test_refusals_name_the_problem(raw: bytes, words: str) -> None:
    with pytest.raises(MalformedMessageError, match=words):
        events(Parser(requests=True), raw)


def test_head_too_large_is_431() -> None:
    parser = Parser(requests=True, max_head_bytes=64)
    with pytest.raises(MalformedMessageError) as refused:
        events(parser, b"GET / HTTP/1.1\r\nX: " + b"a" * 100)
    assert refused.value.status == 431


def test_head_too_large_is_431_when_it_comes_in_small_pieces() -> None:
    parser = Parser(requests=True, max_head_bytes=1000)
    pieces = [b"GET / HTTP/1.1\r\n", *(b"X-%d: %s\r\n" % (i, b"v" * 20) for i in range(100))]
    with pytest.raises(MalformedMessageError) as refused:
        events(parser, *pieces)
    assert refused.value.status == 431


def test_complete_head_too_large_is_431() -> None:
    parser = Parser(requests=True, max_head_bytes=64)
    with pytest.raises(MalformedMessageError) as refused:
        events(parser, b"GET / HTTP/1.1\r\nX: " + b"a" * 100 + b"\r\n\r\n")
    assert refused.value.status == 431


def test_head_under_the_limit_after_a_pipelined_body_is_read() -> None:
    parser = Parser(requests=True, max_head_bytes=200)
    body = b"x" * 500
    first = b"POST /a HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    second = b"GET /b HTTP/1.1\r\nX-Long: " + b"v" * 150 + b"\r\n\r\n"
    seen = events(parser, first + second[:100], second[100:])
    targets = [e.target for e in seen if isinstance(e, RequestHead)]
    assert targets == [b"/a", b"/b"]


def test_response_to_head_has_no_body_whatever_its_length() -> None:
    parser = Parser(requests=False)
    parser.expect_response_to(b"HEAD")
    seen = events(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    head = seen[0]
    assert isinstance(head, ResponseHead)
    assert head.has_length
    assert not head.keep_alive  # the parse stopped at the head: the connection is not reused
    assert seen[1:] == [Signal.END]


def test_interim_responses_come_before_the_answer() -> None:
    parser = Parser(requests=False)
    parser.expect_response_to(b"POST")
    seen = events(
        parser, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    statuses = [e.status for e in seen if isinstance(e, ResponseHead)]
    assert statuses == [100, 200]
    assert seen[-2:] == [b"ok", Signal.END]
    assert parser.idle


def test_response_keeps_its_reason_and_length() -> None:
    parser = Parser(requests=False)
    parser.expect_response_to(b"GET")
    seen = events(parser, b"HTTP/1.1 404 Not Here\r\nContent-Length: 0\r\n\r\n")
    head = seen[0]
    assert isinstance(head, ResponseHead)
    assert (head.status, head.reason, head.has_length, head.keep_alive) == (
        404,
        b"Not Here",
        True,
        True,
    )
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
    assert parser.reading_until_close
    assert parser.feed_eof() is Signal.END


def test_cut_short_response_is_an_error() -> None:
    parser = Parser(requests=False)
    parser.expect_response_to(b"GET")
    events(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(MalformedMessageError):
        parser.feed_eof()


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_ambiguous_or_malformed_responses_are_bad_gateway(raw: bytes) -> None:
    parser = Parser(requests=False)
    parser.expect_response_to(b"GET")
    with pytest.raises(MalformedMessageError) as refused:
        events(parser, raw)
    assert refused.value.status in (501, 502)


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
