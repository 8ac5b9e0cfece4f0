"""HTTP/1.1 messages as a proxy sees them: one incremental parser for requests and responses.

The gateway parses only what it must to forward a message: the start line, the headers, and
the body's framing (Content-Length, chunked, or until the connection closes). llhttp (the
parser of Node.js, through httptools) reads the bytes, with none of its leniencies on; this
module turns its callbacks into events and adds the checks a proxy needs that llhttp leaves
to its user: a bound on the head's size, the HTTP versions served, the end of a response to
HEAD, and a response body in a coding the gateway cannot forward.

Every message that could be read two ways is refused (400 to a client, 502 from a replica),
since a proxy and the server behind it that split a byte stream differently is how requests
are smuggled: both Content-Length and Transfer-Encoding, differing or repeated lengths,
folded (obs-fold) headers, whitespace before a colon, a Transfer-Encoding whose last coding
is not chunked or that is sent twice, malformed chunk sizes, bare CR or LF line ends, and
data after `Connection: close`. docs/gateway.md lists them with their answers.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

import httptools

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
"""Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1)."""

REQUEST_DROP = HOP_BY_HOP | {b"content-length", b"expect"}
"""Dropped from a forwarded request: the gateway answers `Expect` itself and re-frames bodies."""

RESPONSE_DROP = HOP_BY_HOP
"""Dropped from a forwarded response; Content-Length stays, chunked bodies are re-chunked."""

STATUS_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


class MalformedMessageError(Exception):
    """A message the gateway cannot read safely. `status` is what to answer a client with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Signal(enum.Enum):
    """Parser events that carry no data."""

    NEED_DATA = "need data"
    END = "end of message"


@dataclass(slots=True)
class RequestHead:
    """A request's start line and headers (names as received)."""

    method: bytes
    target: bytes
    http10: bool
    headers: list[tuple[bytes, bytes]]
    host: bytes
    keep_alive: bool
    expect_continue: bool
    connection_tokens: frozenset[bytes]
    content_length: int | None
    chunked: bool

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@dataclass(slots=True)
class ResponseHead:
    """A response's status line and headers (names as received)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    has_length: bool
    connection_tokens: frozenset[bytes]


Event = RequestHead | ResponseHead | bytes | Signal
"""What `Parser.next_event` returns: a head, a piece of body, or a signal."""

_LLHTTP = httptools.HttpRequestParser | httptools.HttpResponseParser


class Parser:
    """Reads consecutive messages of one connection: `feed` bytes, then drain `next_event`.

    Each message yields its head, zero or more body pieces (de-chunked), then `Signal.END`.
    A malformed message raises `MalformedMessageError` from `next_event` once the events
    before it are drained, so pipelined requests ahead of a bad one are still answered.
    For responses, call `expect_response_to(method)` before each, since a response to HEAD
    has no body whatever its headers say.
    """

    def __init__(self, *, requests: bool, max_head_bytes: int = 65536) -> None:
        self._requests = requests
        self._max_head = max_head_bytes
        self._llhttp = _strict(
            httptools.HttpRequestParser(self) if requests else httptools.HttpResponseParser(self)
        )
        self._events: deque[Event | MalformedMessageError] = deque()
        self._failed = False
        self._finished = False  # after an upgrade or a HEAD response: nothing more is read
        self._in_message = False
        self._in_head = False
        self._began_in_feed = False
        self._length_body_in_feed = False
        self._field_bytes = 0
        self._unfinished_head_bytes = 0
        self._target = b""
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunked = False
        self._until_close = False
        self._head_request = False

    def expect_response_to(self, method: bytes) -> None:
        """The next response answers a request with this method."""
        self._head_request = method == b"HEAD"

    def feed(self, data: bytes) -> None:
        if self._failed or self._finished:
            return
        self._began_in_feed = self._length_body_in_feed = False
        try:
            self._llhttp.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finished = True  # the message is complete; what follows is not HTTP/1.1
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, _HeadResponseEndError):
                self._end_message()
                self._finished = True
            elif isinstance(cause, MalformedMessageError):
                self._fail(cause)
            else:
                raise
        except httptools.HttpParserError as error:
            self._fail(self._refusal(error))
        else:
            if self._in_head:
                self._count_unfinished_head(data)

    def _count_unfinished_head(self, data: bytes) -> None:
        # llhttp sets no limit on a head; this bounds what it buffers for an unfinished one.
        # A head begun in this read is what follows the read's last blank line, unless a body
        # by length came before it (then it is counted from the next read, a read late).
        if self._began_in_feed:
            if self._length_body_in_feed:
                return
            size = len(data) - (data.rfind(HEAD_END) + 4 if HEAD_END in data else 0)
        else:
            size = len(data)
        self._unfinished_head_bytes += size
        if self._unfinished_head_bytes > self._max_head:
            self._fail(MalformedMessageError(_HEAD_TOO_LARGE, 431))

    @property
    def idle(self) -> bool:
        """Between messages with nothing buffered: a connection here may be reused."""
        return not self._in_message and not self._events and not self._finished

    @property
    def reading_until_close(self) -> bool:
        return self._in_message and self._until_close and not self._in_head

    def feed_eof(self) -> Signal:
        """The peer closed. Ends a body read until close; anything else was cut short."""
        if self.reading_until_close:
            self._in_message = False
            return Signal.END
        raise MalformedMessageError("the connection closed in the middle of a message", 502)

    def next_event(self) -> Event:
        if not self._events:
            return Signal.NEED_DATA
        event = self._events.popleft()
        if isinstance(event, MalformedMessageError):
            raise event
        return event

    def _fail(self, error: MalformedMessageError) -> None:
        self._failed = True
        self._events.append(error)

    def _refusal(self, error: httptools.HttpParserError) -> MalformedMessageError:
        reason = str(error)
        status, message = _REFUSALS.get(reason, (400, ""))
        if not self._requests:
            return MalformedMessageError(f"a malformed response: {message or reason}", 502)
        return MalformedMessageError(message or f"a malformed request: {reason}", status)

    # llhttp's callbacks

    def on_message_begin(self) -> None:
        self._in_message = self._in_head = self._began_in_feed = True
        self._field_bytes = self._unfinished_head_bytes = 0
        self._target = self._reason = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._target += url
        self._field_bytes += len(url)
        if self._field_bytes > self._max_head:
            self._refuse_large_head()

    def on_status(self, reason: bytes) -> None:
        self._reason += reason
        self._field_bytes += len(reason)
        if self._field_bytes > self._max_head:
            self._refuse_large_head()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_bytes += len(name) + len(value) + 4
        if self._field_bytes > self._max_head:
            self._refuse_large_head()
        if self._in_head:  # trailers (after a chunked body) are read and dropped
            self._headers.append((name, value.rstrip(b" \t")))

    def _refuse_large_head(self) -> None:
        if self._in_head:
            raise MalformedMessageError(_HEAD_TOO_LARGE, 431)
        raise MalformedMessageError("the trailers are too large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        fields = _Fields(self._headers)
        self._chunked = fields.chunked
        if self._requests:
            self._events.append(self._request_head(fields))
        else:
            self._events.append(self._response_head(fields))

    def on_body(self, body: bytes) -> None:
        if not self._chunked:
            self._length_body_in_feed = True
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._end_message()

    def _end_message(self) -> None:
        self._in_message = self._in_head = False
        self._events.append(Signal.END)

    # heads

    def _request_head(self, fields: _Fields) -> RequestHead:
        llhttp = self._llhttp
        assert isinstance(llhttp, httptools.HttpRequestParser)
        version = llhttp.get_http_version()
        if version == "1.1":
            http10 = False
        elif version == "1.0":
            http10 = True
        elif version == "0.9":
            # llhttp reads a request line without a version as HTTP/0.9
            raise MalformedMessageError("the request line is not METHOD TARGET HTTP/1.1")
        else:
            raise MalformedMessageError(
                f"only HTTP/1.0 and HTTP/1.1 are served, not HTTP/{version}", 505
            )
        method = llhttp.get_method()
        if method == b"CONNECT":
            raise MalformedMessageError("CONNECT is not served: the gateway is no tunnel", 501)
        tokens = fields.connection_tokens
        keep_alive = b"keep-alive" in tokens if http10 else b"close" not in tokens
        if llhttp.should_upgrade():
            # llhttp reads nothing after an upgrade: answer this request, then close
            keep_alive = False
        return RequestHead(
            method,
            self._target,
            http10,
            fields.headers,
            fields.host,
            keep_alive,
            fields.expect_continue,
            tokens,
            fields.length,
            fields.chunked,
        )

    def _response_head(self, fields: _Fields) -> ResponseHead:
        llhttp = self._llhttp
        assert isinstance(llhttp, httptools.HttpResponseParser)
        status = llhttp.get_status_code()
        version = llhttp.get_http_version()
        if version not in ("1.1", "1.0"):
            raise MalformedMessageError(f"a response in HTTP/{version}, not HTTP/1.1", 502)
        tokens = fields.connection_tokens
        keep_alive = b"keep-alive" in tokens if version == "1.0" else b"close" not in tokens
        no_body = self._head_request or status < 200 or status in (204, 304)
        self._until_close = not no_body and not fields.chunked and fields.length is None
        if self._until_close:
            keep_alive = False
        has_length = no_body or fields.length is not None
        head = ResponseHead(status, self._reason, fields.headers, keep_alive, has_length, tokens)
        if self._head_request and status >= 200:
            # llhttp cannot be told that a response has no body (httptools keeps its
            # callback's answer to itself), so the parse stops here and the connection is
            # not reused: what a replica sent after this head would be misread.
            head.keep_alive = False
            self._events.append(head)
            raise _HeadResponseEndError
        return head


class _HeadResponseEndError(Exception):
    """Stops llhttp at the end of a response to HEAD."""


def _strict(parser: _LLHTTP) -> _LLHTTP:
    # The defaults, spelled out: a proxy must read a message the way the replica behind it
    # will, so none of llhttp's leniencies (each a known request-smuggling vector) is on.
    parser.set_dangerous_leniencies(
        lenient_headers=False,
        lenient_chunked_length=False,
        lenient_keep_alive=False,
        lenient_transfer_encoding=False,
        lenient_version=False,
        lenient_data_after_close=False,
        lenient_optional_lf_after_cr=False,
        lenient_optional_cr_before_lf=False,
        lenient_optional_crlf_after_chunk=False,
        lenient_spaces_after_chunk_size=False,
    )
    return parser


_HEAD_TOO_LARGE = "the message head is too large"

_REFUSALS = {
    "Transfer-Encoding can't be present with Content-Length": (
        400,
        "both Content-Length and Transfer-Encoding are set: send one of them (RFC 9112 6.3)",
    ),
    "Content-Length can't be present with Transfer-Encoding": (
        400,
        "both Content-Length and Transfer-Encoding are set: send one of them (RFC 9112 6.3)",
    ),
    "Duplicate Content-Length": (400, "Content-Length is sent more than once: send it once"),
    "Invalid character in Content-Length": (400, "Content-Length is not a number"),
    "Content-Length overflow": (400, "Content-Length is too large a number"),
    "Unexpected whitespace after header value": (
        400,
        "a header line begins with whitespace (obs-fold, RFC 9112 5.2): "
        "send each header on one line",
    ),
    "Unexpected space after start line": (
        400,
        "a header line begins with whitespace (obs-fold, RFC 9112 5.2): "
        "send each header on one line",
    ),
    "Invalid header field char": (
        400,
        "a header name holds a character names cannot have (whitespace before the colon?)",
    ),
    "Request has invalid `Transfer-Encoding`": (
        501,
        "only the chunked transfer coding is read, and it must come last in Transfer-Encoding",
    ),
    "Invalid `Transfer-Encoding` header value": (
        400,
        "Transfer-Encoding names a coding after chunked, or is sent twice: "
        "send one Transfer-Encoding ending in chunked",
    ),
    "Invalid character in chunk size": (
        400,
        "a malformed chunk size: a chunk starts with its size in hex digits and CRLF",
    ),
    "Chunk size overflow": (400, "a chunk size is too large a number"),
    "Expected LF after chunk data": (400, "a chunk is longer than its declared size"),
    "Invalid method encountered": (400, "the request method is not an HTTP method"),
    "Expected HTTP/, RTSP/ or ICE/": (
        400,
        "the request line is not METHOD TARGET HTTP/1.1 (a space in the target?)",
    ),
    "Invalid header value char": (
        400,
        "a header value holds a control character (NUL, vertical tab, bare CR)",
    ),
    "Missing expected LF after header value": (
        400,
        "a header line ends in CR without LF: end every line with CRLF",
    ),
    "Expected CRLF after version": (400, "the request line does not end with CRLF"),
    "Missing expected CR after header value": (
        400,
        "a header line ends in LF without CR: end every line with CRLF",
    ),
    "Data after `Connection: close`": (
        400,
        "a request follows one that closes the connection: send it on a new connection",
    ),
}
"""llhttp's reasons for refusing a request, as a status and a message that names the fix."""


class _Fields:
    """The header lines of a head, with the few that matter to framing picked out.

    llhttp has already refused differing or repeated lengths, a length beside chunked, and a
    request whose codings do not end in chunked. A response whose codings do not end in
    chunked it reads until close, undecoded; the gateway would forward that body without the
    header that says how it is coded, so it refuses it here too.
    """

    __slots__ = ("chunked", "connection_tokens", "expect_continue", "headers", "host", "length")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        length: int | None = None
        chunked = False
        expect_continue = False
        host = b""
        tokens: frozenset[bytes] = frozenset()
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding":
                codings = [c.strip(b" \t").lower() for c in value.split(b",")]
                if codings[-1] != b"chunked":
                    raise MalformedMessageError("only the chunked transfer coding is read", 501)
                chunked = True
            elif lower == b"host":
                host = value
            elif lower == b"connection":
                tokens = tokens | {t.strip(b" \t").lower() for t in value.split(b",")}
            elif lower == b"expect":
                expect_continue = value.lower() == b"100-continue"
        if chunked and length is not None:
            raise MalformedMessageError("both Content-Length and Transfer-Encoding are set")
        self.headers = headers
        self.length = length
        self.chunked = chunked
        self.host = host
        self.connection_tokens = tokens
        self.expect_continue = expect_continue


def forwarded_headers(
    headers: list[tuple[bytes, bytes]], drop: frozenset[bytes], connection_tokens: frozenset[bytes]
) -> bytes:
    """The end-to-end header lines of a message, ready to follow a new start line."""
    lines = []
    for name, value in headers:
        lower = name.lower()
        if lower in drop or lower in connection_tokens:
            continue
        lines.append(name + b": " + value + CRLF)
    return b"".join(lines)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def simple_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    keep_alive: bool = True,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A complete response the gateway writes itself (errors, health, metrics)."""
    reason = STATUS_REASONS.get(status, b"Unknown")
    lines = [b"HTTP/1.1 %d %b\r\n" % (status, reason)]
    lines.append(b"content-type: " + content_type + CRLF)
    lines.append(b"content-length: %d\r\n" % len(body))
    lines.extend(name + b": " + value + CRLF for name, value in extra_headers)
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(CRLF)
    lines.append(body)
    return b"".join(lines)
