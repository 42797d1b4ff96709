"""Client, Session and Memory: fot-server's API (proto/fot.proto) in Python.

The stubs are generated at build time from proto/fot.proto into
fotserve/_proto (the build copies this package next to them). A Client is
safe to share between threads, as the gRPC channel under it is.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import grpc
from google.protobuf import json_format

from fotserve._proto import fot_pb2 as pb
from fotserve._proto import fot_pb2_grpc as pb_grpc

# ---------------------------------------------------------------------------
# Errors


class FotserveError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `message` the server's words."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class NotFoundError(FotserveError):
    """Unknown session, document or snapshot."""


class InvalidArgumentError(FotserveError):
    """Malformed options, names, text or ids."""


class AlreadyExistsError(FotserveError):
    """A session, document or snapshot of that name exists."""


class FailedPreconditionError(FotserveError):
    """The request conflicts with the session's state."""


class OutOfRangeError(FotserveError):
    """A resume offset beyond what the server holds."""


class ResourceExhaustedError(FotserveError):
    """Too many sessions, or a message or document too large."""


class AbortedError(FotserveError):
    """Another stream is ingesting into the session; retry."""


class UnavailableError(FotserveError):
    """The server is unreachable or shutting down."""


class UnauthenticatedError(FotserveError):
    """No valid API key."""


class PermissionDeniedError(FotserveError):
    """The API key lacks the right."""


class DataLossError(FotserveError):
    """Stored data is damaged."""


class InternalError(FotserveError):
    """A server-side failure; the message says which."""


_ERRORS = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.INTERNAL: InternalError,
}

# A broken stream or a busy session is worth another try; a rejection is not.
_RETRIABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)


def _error(e: grpc.RpcError) -> FotserveError:
    code = e.code()
    return _ERRORS.get(code, FotserveError)(code, e.details() or "")


# ---------------------------------------------------------------------------
# Results


@dataclass
class Retrieved:
    """One memory entry a query attended to."""

    layer: int
    head: int
    entry_id: int
    document: str  # "" for the query's own tokens
    position: int  # token position in the document
    token_text: str
    inner_product: float
    attention_share: float  # its share of the softmax mass


@dataclass
class Token:
    """One generated token, as it streams."""

    id: int
    text: str  # the decoded text it completes (may be "")
    piece: str
    trace: List[Retrieved] = field(default_factory=list)


@dataclass
class Answer:
    text: str
    tokens: List[Token]
    finish_reason: str  # "length", "eos" or "stop"
    prompt_tokens: int
    generated_tokens: int


@dataclass
class Score:
    log_likelihood: float  # natural log
    perplexity: float
    token_ids: List[int]
    token_log_probs: List[float]


@dataclass
class IngestResult:
    document: str
    document_tokens: int
    stream_tokens: int
    committed_tokens: int
    resume_offset: int  # bytes of the document in the session
    complete: bool


def _retrieved(layers: Iterable[Any]) -> List[Retrieved]:
    out = []
    for layer in layers:
        for head in layer.heads:
            for r in head.entries:
                e = r.entry
                out.append(
                    Retrieved(layer.layer, head.head, e.id, e.document, e.position,
                              e.token_text, r.inner_product, r.attention_share))
    return out


def _as_dict(message: Any) -> Dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


# ---------------------------------------------------------------------------
# Ingest sources


def _utf8_chunks(source: Union[str, bytes, os.PathLike, Iterable[str]],
                 chunk_bytes: int) -> Iterator[bytes]:
    """The source as UTF-8 pieces of about chunk_bytes, cut between characters."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and os.path.isfile(source)):
        with open(source, "rb") as f:
            pieces: Iterable[bytes] = iter(lambda: f.read(chunk_bytes), b"")
            yield from _whole_characters(pieces)
        return
    if isinstance(source, bytes):
        source = source.decode("utf-8")  # UnicodeDecodeError names the byte
    if isinstance(source, str):
        data = source.encode("utf-8")
        yield from _whole_characters(data[i:i + chunk_bytes]
                                     for i in range(0, len(data), chunk_bytes))
        return
    for text in source:
        yield text.encode("utf-8")


def _whole_characters(pieces: Iterable[bytes]) -> Iterator[bytes]:
    carry = b""
    for piece in pieces:
        data = carry + piece
        cut = len(data)
        # Back up over the continuation bytes of a character the piece cuts.
        for back in range(1, min(4, len(data)) + 1):
            c = data[-back]
            if c & 0xC0 == 0x80:
                continue
            length = 1 if c < 0x80 else 2 if c & 0xE0 == 0xC0 else 3 if c & 0xF0 == 0xE0 else 4
            cut = len(data) - back if length > back else len(data)
            break
        carry = data[cut:]
        if cut:
            data[:cut].decode("utf-8")  # raises on invalid UTF-8 before anything is sent
            yield data[:cut]
    if carry:
        raise UnicodeDecodeError("utf-8", carry, 0, len(carry), "the text ends inside a character")


class _Unsent:
    """Bytes of a document from its last acknowledged offset on, so that a
    broken stream resends exactly what the server does not hold."""

    def __init__(self, chunks: Iterator[bytes], offset: int):
        self._chunks = chunks
        self._held: List[bytes] = []  # sent, not yet acknowledged
        self._held_from = offset  # document offset of _held[0]
        self._lock = threading.Lock()

    def acknowledge(self, offset: int) -> None:
        with self._lock:
            self._drop_below(offset)

    def replay(self, offset: int) -> Iterator[bytes]:
        """What a new stream from `offset` sends: held bytes, then new ones."""
        with self._lock:
            self._drop_below(offset)
            held = b"".join(self._held)[offset - self._held_from:] if self._held else b""
        if held:
            yield held
        for chunk in self._chunks:
            with self._lock:
                self._held.append(chunk)
            yield chunk

    def _drop_below(self, offset: int) -> None:
        while self._held and self._held_from + len(self._held[0]) <= offset:
            self._held_from += len(self._held.pop(0))


# ---------------------------------------------------------------------------
# Client, Session, Memory


def _pem(source: Union[str, bytes]) -> bytes:
    """PEM bytes given as bytes or as a file's path."""
    if isinstance(source, bytes):
        return source
    with open(source, "rb") as f:
        return f.read()


class Client:
    """A connection to fot-server.

    address: "host:port". api_key: sent as `authorization: Bearer KEY` with
    every call. tls: None (plaintext), True (TLS with the system's roots), or
    the path to (or bytes of) a PEM CA certificate. client_cert: for a server
    with mutual TLS, (certificate, private key), each a PEM path or bytes.
    timeout: seconds per unary call (None: no deadline).
    """

    def __init__(self, address: str = "127.0.0.1:50051", api_key: Optional[str] = None,
                 tls: Union[None, bool, str, bytes] = None, timeout: Optional[float] = None,
                 client_cert: Optional[Tuple[Union[str, bytes], Union[str, bytes]]] = None):
        options = [("grpc.max_receive_message_length", 256 << 20)]
        if client_cert is not None and not tls:
            raise ValueError("client_cert needs tls (True or a CA certificate)")
        if tls:
            roots = None if tls is True else _pem(tls)
            chain = key = None
            if client_cert is not None:
                chain, key = _pem(client_cert[0]), _pem(client_cert[1])
            credentials = grpc.ssl_channel_credentials(
                root_certificates=roots, private_key=key, certificate_chain=chain)
            self._channel = grpc.secure_channel(address, credentials, options)
        else:
            self._channel = grpc.insecure_channel(address, options)
        self._stub = pb_grpc.FotStub(self._channel)
        self._metadata = [("authorization", f"Bearer {api_key}")] if api_key else []
        self.address = address
        self.timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout,
                                               metadata=self._metadata)
        except grpc.RpcError as e:
            raise _error(e) from None

    def server_info(self) -> Dict[str, Any]:
        """The model, its window and memory layers, and the server's limits."""
        return _as_dict(self._call("GetServerInfo", pb.GetServerInfoRequest()))

    def create_session(self, name: str, *, retrieval: str = "", index: str = "",
                       memory_dtype: str = "", last_context_length: int = 0,
                       attention: str = "", n_global: Optional[int] = None,
                       local_window: int = 0, memory_positioning: str = "",
                       memory_layers: str = "") -> "Session":
        """A new session; empty options take the server's defaults."""
        options = pb.SessionOptions(retrieval=retrieval, index=index, memory_dtype=memory_dtype,
                                    last_context_length=last_context_length,
                                    attention=attention, local_window=local_window,
                                    memory_positioning=memory_positioning,
                                    memory_layers=memory_layers)
        if n_global is not None:
            options.n_global = n_global
        self._call("CreateSession", pb.CreateSessionRequest(name=name, options=options))
        return Session(self, name)

    def session(self, name: str) -> "Session":
        """An existing session (NotFoundError if there is none of that name)."""
        self._call("GetSession", pb.GetSessionRequest(session=name))
        return Session(self, name)

    def sessions(self) -> List[str]:
        return [s.name for s in self._call("ListSessions", pb.ListSessionsRequest()).sessions]

    def snapshots(self) -> List[str]:
        return list(self._call("ListSessions", pb.ListSessionsRequest()).snapshots)

    def load_session(self, snapshot: str, name: str = "") -> "Session":
        """A new live session from a snapshot that Session.save wrote."""
        info = self._call("LoadSession", pb.LoadSessionRequest(snapshot=snapshot, session=name))
        return Session(self, info.name)


class Session:
    """One named memory on the server. Cheap: holds only the name."""

    def __init__(self, client: Client, name: str):
        self.client = client
        self.name = name
        self.memory = Memory(self)

    def __repr__(self) -> str:
        return f"Session({self.name!r})"

    def info(self) -> Dict[str, Any]:
        """Options, token counts, memory bytes and documents."""
        return _as_dict(self.client._call("GetSession", pb.GetSessionRequest(session=self.name)))

    def delete(self) -> None:
        self.client._call("DeleteSession", pb.DeleteSessionRequest(session=self.name))

    def delete_document(self, document: str) -> None:
        """Hides the document's memory entries from retrieval."""
        self.client._call("DeleteDocument",
                          pb.DeleteDocumentRequest(session=self.name, document=document))

    def save(self, snapshot: str = "", overwrite: bool = False) -> int:
        """Writes a named snapshot (empty: just make sure the session is saved).
        Returns its bytes on disk."""
        request = pb.SaveSessionRequest(session=self.name, snapshot=snapshot, overwrite=overwrite)
        return self.client._call("SaveSession", request).bytes

    def ingest(self, source: Union[str, bytes, os.PathLike, Iterable[str]],
               document: Optional[str] = None, *, chunk_bytes: int = 64 << 10,
               add_bos: Optional[bool] = None, progress: bool = False, retries: int = 5,
               backoff: float = 0.2) -> IngestResult:
        """Streams one document into the session.

        source: a file path (a str naming an existing file is read as that
        file), a text (str, or UTF-8 bytes), or an iterable of str pieces.
        document: its id (default: the file's name). A document the session
        already holds in part continues from where the server stands; one it
        holds complete is AlreadyExistsError. A broken stream (UNAVAILABLE,
        ABORTED) is retried up to `retries` times with exponential backoff,
        resending only what the server did not acknowledge.
        add_bos: start with BOS (default: when the session is empty).
        """
        if document is None:
            if not (isinstance(source, os.PathLike) or
                    (isinstance(source, str) and os.path.isfile(source))):
                raise ValueError("ingest of a text or an iterable needs document=")
            document = os.path.basename(os.fspath(source))
        offset, complete, empty = self._document_state(document)
        if complete:
            raise AlreadyExistsError(grpc.StatusCode.ALREADY_EXISTS,
                                     f"document '{document}' is complete in '{self.name}'")
        chunks = _utf8_chunks(source, chunk_bytes)
        skipped = 0
        for chunk in chunks:  # what the server already holds is not sent again
            if skipped + len(chunk) > offset:
                chunks = _prepend(chunk[offset - skipped:], chunks)
                break
            skipped += len(chunk)
        unsent = _Unsent(chunks, offset)
        bos = empty if add_bos is None else add_bos
        for attempt in range(retries + 1):
            try:
                if attempt > 0:  # where the server stands after the break
                    offset = self._document_state(document)[0]
                last = self._ingest_stream(document, unsent, offset, bos, progress)
                if progress:
                    print(file=sys.stderr)
                return last
            except grpc.RpcError as e:
                error = _error(e)
            except FotserveError as e:  # the server still down while asked where it stands
                error = e
            if error.code not in _RETRIABLE or attempt == retries:
                raise error from None
            time.sleep(backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def _document_state(self, document: str):
        info = self.client._call("GetSession", pb.GetSessionRequest(session=self.name))
        empty = info.stream_tokens == 0 and not info.documents
        for d in info.documents:
            if d.name == document:
                return d.resume_offset, d.complete, empty
        return 0, False, empty

    def _ingest_stream(self, document: str, unsent: _Unsent, offset: int, add_bos: bool,
                       progress: bool) -> IngestResult:
        def requests() -> Iterator[Any]:
            yield pb.IngestRequest(open=pb.IngestOpen(session=self.name, document=document,
                                                      resume=True, offset=offset,
                                                      add_bos=add_bos and offset == 0))
            pending = None
            for chunk in unsent.replay(offset):
                if pending is not None:
                    yield pb.IngestRequest(chunk=pb.IngestChunk(text=pending.decode("utf-8")))
                pending = chunk
            yield pb.IngestRequest(chunk=pb.IngestChunk(
                text=(pending or b"").decode("utf-8"), end_of_document=True))

        ack = None
        for ack in self.client._stub.Ingest(requests(), metadata=self.client._metadata):
            unsent.acknowledge(ack.resume_offset)
            if progress:
                print(f"\r{document}: {ack.resume_offset} bytes, {ack.document_tokens} tokens",
                      end="", file=sys.stderr, flush=True)
        if ack is None or not ack.complete:
            raise FotserveError(grpc.StatusCode.UNKNOWN,
                                f"the server ended the ingest of '{document}' before its end")
        return IngestResult(document, ack.document_tokens, ack.stream_tokens,
                            ack.committed_tokens, ack.resume_offset, ack.complete)

    def ask(self, question: str, *, max_tokens: int = 64, temperature: float = 0.0,
            top_p: float = 0.0, seed: int = 0, stop: Sequence[str] = (),
            retrieval: str = "", documents: Sequence[str] = (), keep_turn: bool = False,
            ignore_eos: bool = False, trace: bool = False, trace_top: int = 0,
            stream: bool = False) -> Union[Answer, Iterator[Token]]:
        """Generates an answer from the session's memory.

        stream=False returns the Answer; stream=True yields Tokens as they are
        generated (each with the memory entries it retrieved when trace=True).
        """
        request = pb.GenerateRequest(session=self.name, question=question,
                                     max_tokens=max_tokens, temperature=temperature,
                                     top_p=top_p, seed=seed, stop=list(stop),
                                     retrieval=retrieval, documents=list(documents),
                                     keep_turn=keep_turn, ignore_eos=ignore_eos, trace=trace,
                                     trace_top=trace_top)
        if stream:
            return self._tokens(request)
        tokens: List[Token] = []
        for item in self._generate(request):
            if isinstance(item, Token):
                tokens.append(item)
            else:
                text = "".join(t.text for t in tokens) + item.text
                return Answer(text, tokens, item.finish_reason, item.prompt_tokens,
                              item.generated_tokens)
        raise FotserveError(grpc.StatusCode.UNKNOWN, "the answer ended without its final message")

    def _tokens(self, request: Any) -> Iterator[Token]:
        with contextlib.closing(self._generate(request)) as items:  # closing this closes it
            for item in items:
                if isinstance(item, Token):
                    yield item

    def _generate(self, request: Any) -> Iterator[Any]:
        """The Tokens of an answer, then its final message. A caller that stops
        iterating cancels the call, so the server stops generating."""
        call = self.client._stub.Generate(request, metadata=self.client._metadata)
        try:
            for m in call:
                if m.done:
                    if m.text:
                        yield Token(-1, m.text, "")
                    yield m
                    return
                yield Token(m.token_id, m.text, m.piece, _retrieved(m.trace))
        except grpc.RpcError as e:
            raise _error(e) from None
        finally:
            call.cancel()  # a no-op once the answer is complete

    def score(self, continuation: str, context: str = "", retrieval: str = "") -> Score:
        """Log-likelihood of `continuation` after the session's stream + `context`."""
        r = self.client._call("Score", pb.ScoreRequest(session=self.name, context=context,
                                                       continuation=continuation,
                                                       retrieval=retrieval))
        return Score(r.log_likelihood, r.perplexity, list(r.continuation_token_ids),
                     list(r.token_log_probs))


class Memory:
    """Inspection of a session's memory: stats, entries, search."""

    def __init__(self, session: Session):
        self._session = session

    def _call(self, method: str, request: Any) -> Any:
        return self._session.client._call(method, request)

    def stats(self) -> Dict[str, Any]:
        """Per memory layer and kv head: entries, live entries, bytes, search costs."""
        return _as_dict(self._call("MemoryStats", pb.MemoryStatsRequest(session=self._session.name)))

    def entries(self, layer: Optional[int] = None, page_size: int = 1000,
                offset: int = 0) -> Iterator[Dict[str, Any]]:
        """Every entry of a memory layer (default: the first) from `offset` on,
        with provenance; pages are fetched as the iteration goes."""
        request = pb.ListEntriesRequest(session=self._session.name, page_size=page_size,
                                        offset=offset)
        if layer is not None:
            request.layer = layer
        while True:
            page = self._call("ListEntries", request)
            for e in page.entries:
                yield _as_dict(e)
            if not page.has_more:
                return
            request.page_token = page.next_page_token

    def context(self, entry_id: int, layer: Optional[int] = None, radius: int = 0) -> str:
        """The text around one entry, the entry's own text in [brackets]."""
        request = pb.EntryContextRequest(session=self._session.name, id=entry_id, radius=radius)
        if layer is not None:
            request.layer = layer
        r = self._call("EntryContext", request)
        return f"{r.text_before}[{r.entry_text}]{r.text_after}"

    def search(self, text: str, top: int = 8, retrieval: str = "") -> List[Retrieved]:
        """What each memory layer retrieves for the last token of `text`, run
        after the session's stream."""
        r = self._call("SearchMemory", pb.SearchMemoryRequest(session=self._session.name,
                                                              text=text, top=top,
                                                              retrieval=retrieval))
        return _retrieved(r.layers)

    def delete_document(self, document: str) -> None:
        self._session.delete_document(document)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
