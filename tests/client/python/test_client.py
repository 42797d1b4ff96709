"""The Python client against the real fot-server: sessions, chunked and
resumed ingest equal to one-shot, streamed answers with traces, scores,
memory inspection, snapshots, errors, and every RPC through the proto3 JSON
mapping with plain strings (as grpcurl -d sends them)."""

import json
import math
import threading

import grpc
import pytest
from google.protobuf import json_format

import fotserve
from fotserve._proto import fot_pb2 as pb
from fotserve._proto import fot_pb2_grpc as pb_grpc

TEXT = ("The river stone is grey. Café crème costs 5 €, naïve façade: ça coûte. "
        "Καλημέρα κόσμε, 東京は大きい. ") * 12
QUESTION = " The river stone is"


def answer_tokens(session, question=QUESTION):
    return [t.id for t in session.ask(question, max_tokens=6, ignore_eos=True).tokens]


def one_shot(client, name):
    session = client.create_session(name)
    session.ingest(TEXT, document="doc")
    return session


def test_an_api_key_travels_as_bearer_metadata(server):
    # This server has no --api-keys, so it ignores the header (tests/server/security
    # checks a server with keys).
    with fotserve.Client(server.address, api_key="secret") as keyed:
        assert isinstance(keyed.sessions(), list)
        assert keyed._metadata == [("authorization", "Bearer secret")]


def test_sessions_are_created_listed_and_deleted(client):
    session = client.create_session("created", retrieval="knn:8", index="flat")
    assert "created" in client.sessions()
    info = session.info()
    assert info["name"] == "created"
    assert info["options"]["retrieval"] == "knn:8"
    assert client.server_info()["vocab_size"] > 0
    session.delete()
    assert "created" not in client.sessions()


def test_any_chunking_gives_the_one_shot_stream_and_answer(client):
    expected = one_shot(client, "whole")
    for name, source, chunk in [("bytes7", TEXT, 7), ("bytes1", TEXT, 1),
                                ("pieces", [TEXT[i:i + 13] for i in range(0, len(TEXT), 13)], 0)]:
        session = client.create_session(name)
        result = session.ingest(source, document="doc", chunk_bytes=chunk or 64 << 10)
        assert result.complete
        assert result.resume_offset == len(TEXT.encode("utf-8"))
        assert session.info()["stream_tokens"] == expected.info()["stream_tokens"], name
        assert answer_tokens(session) == answer_tokens(expected), name


def test_ingest_resumes_a_document_after_a_cut_stream(client, server):
    expected = one_shot(client, "uncut")
    session = client.create_session("cut")
    data = TEXT.encode("utf-8")
    # A stream that breaks after 100 bytes: no end_of_document.
    stub = pb_grpc.FotStub(grpc.insecure_channel(server.address))
    requests = [pb.IngestRequest(open=pb.IngestOpen(session="cut", document="doc", add_bos=True)),
                pb.IngestRequest(chunk=pb.IngestChunk(text=data[:100].decode("utf-8")))]
    acks = list(stub.Ingest(iter(requests)))
    assert not acks[-1].complete
    result = session.ingest(TEXT, document="doc")
    assert result.complete and result.resume_offset == len(data)
    assert answer_tokens(session) == answer_tokens(expected)


def test_a_broken_stream_is_retried_from_the_last_acknowledged_offset(client, server):
    expected = one_shot(client, "steady")
    session = client.create_session("broken")
    pieces = [TEXT[i:i + 40] for i in range(0, len(TEXT), 40)]

    comeback = threading.Timer(1.0, server.start)

    def source():
        for i, piece in enumerate(pieces):
            if i == 5:  # the server dies mid-document, and is back a second later
                server.kill()
                comeback.start()
            yield piece

    result = session.ingest(source(), document="doc", backoff=0.3)
    comeback.join()
    assert result.complete
    assert answer_tokens(session) == answer_tokens(expected)


def test_ask_streams_tokens_with_the_memory_they_retrieved(client):
    session = client.create_session("traced", retrieval="knn:4")
    session.ingest(TEXT, document="doc")
    tokens = list(session.ask(QUESTION, max_tokens=4, ignore_eos=True, trace=True, stream=True))
    assert len([t for t in tokens if t.id >= 0]) == 4
    retrieved = [r for t in tokens for r in t.trace]
    assert retrieved, "a memory layer retrieves entries for every token"
    assert {r.document for r in retrieved} <= {"doc", ""}
    answer = session.ask(QUESTION, max_tokens=4, ignore_eos=True)
    assert answer.text == "".join(t.text for t in tokens)
    assert answer.finish_reason == "length" and answer.generated_tokens == 4


def test_abandoning_a_streamed_answer_cancels_its_generation(client):
    """A caller that stops iterating must not leave the server generating (and
    holding the session against ingests) for the rest of max_tokens."""
    session = one_shot(client, "abandoned")
    tokens = session.ask(QUESTION, max_tokens=65536, ignore_eos=True, stream=True)
    next(tokens)
    tokens.close()  # what leaving a for loop early does, once the generator is collected
    # The ingest needs the session's writer lock, which a running Generate holds.
    session.ingest("more text", document="after", retries=0)


def test_score_is_the_sum_of_token_log_probabilities(client):
    session = one_shot(client, "scored")
    score = session.score(" grey. Café", context=QUESTION)
    assert len(score.token_log_probs) == len(score.token_ids) > 0
    assert score.log_likelihood == pytest.approx(sum(score.token_log_probs), rel=1e-5)
    assert score.perplexity == pytest.approx(
        math.exp(-score.log_likelihood / len(score.token_ids)), rel=1e-5)


def test_memory_inspection_and_document_deletion(client):
    session = client.create_session("inspected")
    session.ingest(TEXT, document="first")
    session.ingest(TEXT, document="second")
    stats = session.memory.stats()
    assert stats["layers"] and set(stats["documents"]) == {"first", "second"}
    entries = list(session.memory.entries(page_size=100))
    assert len(entries) == int(stats["layers"][0]["heads"][0]["entries"])
    assert {e["document"] for e in entries} == {"first", "second"}
    assert "[" in session.memory.context(int(entries[10]["id"]))
    found = session.memory.search(QUESTION, top=4)
    assert found and {r.document for r in found} <= {"first", "second", ""}
    session.memory.delete_document("first")
    assert session.memory.stats()["documents"] == ["second"]
    assert all(r.document != "first" for r in session.memory.search(QUESTION, top=4))


def test_a_saved_snapshot_loads_as_a_session_that_answers_alike(client):
    session = one_shot(client, "original")
    assert session.save("snap") > 0
    assert "snap" in client.snapshots()
    copy = client.load_session("snap", "copy")
    assert answer_tokens(copy) == answer_tokens(session)


def test_errors_keep_the_grpc_code_and_message(client, server):
    def expect(error_type, code, call):
        with pytest.raises(error_type) as caught:
            call()
        assert caught.value.code == code
        assert caught.value.message
        assert isinstance(caught.value, fotserve.FotserveError)

    expect(fotserve.NotFoundError, grpc.StatusCode.NOT_FOUND, lambda: client.session("nope"))
    client.create_session("twice")
    expect(fotserve.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS,
           lambda: client.create_session("twice"))
    expect(fotserve.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT,
           lambda: client.create_session("bad", retrieval="sometimes"))
    expect(fotserve.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT,
           lambda: client.session("twice").ask(""))
    # A document that is no longer the session's latest cannot be resumed.
    session = client.create_session("order")
    stub = pb_grpc.FotStub(grpc.insecure_channel(server.address))
    list(stub.Ingest(iter([pb.IngestRequest(open=pb.IngestOpen(session="order", document="a")),
                           pb.IngestRequest(chunk=pb.IngestChunk(text="open text "))])))
    session.ingest("later text", document="b")
    expect(fotserve.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION,
           lambda: session.ingest("open text and more", document="a"))
    expect(fotserve.OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE,
           lambda: _raise(lambda: list(stub.Ingest(iter([pb.IngestRequest(
               open=pb.IngestOpen(session="order", document="c", resume=True, offset=9))])))))
    expect(fotserve.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED,
           lambda: session.ask("x" * (5 << 20)))
    with fotserve.Client("127.0.0.1:1", timeout=5) as nowhere:
        expect(fotserve.UnavailableError, grpc.StatusCode.UNAVAILABLE, nowhere.sessions)


def _raise(call):
    """Runs a raw stub call, turning its grpc.RpcError into the client's error."""
    try:
        call()
    except grpc.RpcError as e:
        raise fotserve.client._error(e) from None


def test_every_rpc_takes_plain_strings_through_the_json_mapping(server):
    """Each request as grpcurl -d would send it: JSON text, strings plain."""
    stub = pb_grpc.FotStub(grpc.insecure_channel(server.address))

    def call(method, request_type, text):
        request = json_format.Parse(text, request_type())
        response = getattr(stub, method)(request, timeout=60)
        return json.loads(json_format.MessageToJson(response))

    assert call("GetServerInfo", pb.GetServerInfoRequest, "{}")["vocabSize"] > 0
    created = call("CreateSession", pb.CreateSessionRequest,
                   '{"name": "notes", "options": {"retrieval": "knn:8", "index": "flat"}}')
    assert created["name"] == "notes" and created["options"]["retrieval"] == "knn:8"
    ingest = [json_format.Parse(t, pb.IngestRequest()) for t in [
        '{"open": {"session": "notes", "document": "café.txt", "addBos": true}}',
        json.dumps({"chunk": {"text": TEXT, "endOfDocument": True}})]]
    acks = [json.loads(json_format.MessageToJson(a)) for a in stub.Ingest(iter(ingest))]
    assert acks[-1]["complete"]
    assert call("GetSession", pb.GetSessionRequest,
                '{"session": "notes"}')["documents"][0]["name"] == "café.txt"
    assert "notes" in [s["name"] for s in call("ListSessions", pb.ListSessionsRequest, "{}")
                       ["sessions"]]
    answer = [json.loads(json_format.MessageToJson(m)) for m in stub.Generate(json_format.Parse(
        '{"session": "notes", "question": " The river stone is", "maxTokens": 3,'
        ' "stop": ["€"], "documents": ["café.txt"]}', pb.GenerateRequest()))]
    assert answer[-1]["done"]
    assert "logLikelihood" in call("Score", pb.ScoreRequest,
                                   '{"session": "notes", "continuation": " grey"}')
    assert call("MemoryStats", pb.MemoryStatsRequest,
                '{"session": "notes"}')["documents"] == ["café.txt"]
    page = call("ListEntries", pb.ListEntriesRequest, '{"session": "notes", "pageSize": 5}')
    assert page["entries"][0]["document"] == "café.txt"
    assert "entryText" in call("EntryContext", pb.EntryContextRequest,
                               '{"session": "notes", "id": 3}')
    assert call("SearchMemory", pb.SearchMemoryRequest,
                '{"session": "notes", "text": " river"}')["layers"]
    call("SaveSession", pb.SaveSessionRequest, '{"session": "notes", "snapshot": "notes-json"}')
    assert call("LoadSession", pb.LoadSessionRequest,
                '{"snapshot": "notes-json", "session": "notes-copy"}')["name"] == "notes-copy"
    call("DeleteDocument", pb.DeleteDocumentRequest,
         '{"session": "notes", "document": "café.txt"}')
    call("DeleteSession", pb.DeleteSessionRequest, '{"session": "notes"}')


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return f"details of {self._code.name}"


def test_every_status_code_maps_to_its_exception():
    """Codes the test server cannot be made to send (auth, data loss, ...)
    map as the ones it does."""
    expected = {
        grpc.StatusCode.NOT_FOUND: fotserve.NotFoundError,
        grpc.StatusCode.INVALID_ARGUMENT: fotserve.InvalidArgumentError,
        grpc.StatusCode.ALREADY_EXISTS: fotserve.AlreadyExistsError,
        grpc.StatusCode.FAILED_PRECONDITION: fotserve.FailedPreconditionError,
        grpc.StatusCode.OUT_OF_RANGE: fotserve.OutOfRangeError,
        grpc.StatusCode.RESOURCE_EXHAUSTED: fotserve.ResourceExhaustedError,
        grpc.StatusCode.ABORTED: fotserve.AbortedError,
        grpc.StatusCode.UNAVAILABLE: fotserve.UnavailableError,
        grpc.StatusCode.UNAUTHENTICATED: fotserve.UnauthenticatedError,
        grpc.StatusCode.PERMISSION_DENIED: fotserve.PermissionDeniedError,
        grpc.StatusCode.DATA_LOSS: fotserve.DataLossError,
        grpc.StatusCode.INTERNAL: fotserve.InternalError,
        grpc.StatusCode.CANCELLED: fotserve.FotserveError,
    }
    for code, error_type in expected.items():
        error = fotserve.client._error(_FakeRpcError(code))
        assert type(error) is error_type, code
        assert error.code == code and error.message == f"details of {code.name}"
        assert code.name in str(error)
