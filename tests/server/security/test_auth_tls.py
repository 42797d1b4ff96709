"""Authentication and TLS against the real fot-server (issue 16): API keys with
scopes and prefixes from a plain gRPC client, the Python client and fotctl;
TLS and mutual TLS with certificates made at test time; health checking open,
reflection behind the keys; malformed key and TLS files refused at startup;
keys never in the server's log."""

import os
import subprocess
import time

import grpc
import pytest

import fotserve
from fotserve._proto import fot_pb2 as pb
from fotserve._proto import fot_pb2_grpc as pb_grpc

from conftest import KEYS, start_failure

TEXT = "The river stone is grey. The old lamp keeps 12 secrets. " * 20
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
LIST_SERVICES = b"\x3a\x00"  # ServerReflectionRequest{list_services: ""}


def bearer(key):
    return [("authorization", f"Bearer {key}")] if key else []


def code_of(call):
    """The status code of `call()`, OK when it succeeds (streams are drained)."""
    try:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, (bytes, str)):
            list(result)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def details_of(call):
    """The status message of `call()`; empty when it succeeds."""
    try:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, (bytes, str)):
            list(result)
    except grpc.RpcError as e:
        return e.details()
    return ""


def ingest_requests(session, document="doc", text=TEXT):
    return iter([pb.IngestRequest(open=pb.IngestOpen(session=session, document=document)),
                 pb.IngestRequest(chunk=pb.IngestChunk(text=text, end_of_document=True))])


def every_call(stub, key, session="s"):
    """One call of every Fot method, for `key`, on `session`."""
    md = bearer(key)
    return {
        "GetServerInfo": lambda: stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=md),
        "CreateSession": lambda: stub.CreateSession(pb.CreateSessionRequest(name=session),
                                                    metadata=md),
        "GetSession": lambda: stub.GetSession(pb.GetSessionRequest(session=session), metadata=md),
        "ListSessions": lambda: stub.ListSessions(pb.ListSessionsRequest(), metadata=md),
        "Ingest": lambda: stub.Ingest(ingest_requests(session), metadata=md),
        "DeleteDocument": lambda: stub.DeleteDocument(
            pb.DeleteDocumentRequest(session=session, document="doc"), metadata=md),
        "Generate": lambda: stub.Generate(
            pb.GenerateRequest(session=session, question=" The river", max_tokens=2),
            metadata=md),
        "Score": lambda: stub.Score(
            pb.ScoreRequest(session=session, continuation=" stone"), metadata=md),
        "MemoryStats": lambda: stub.MemoryStats(pb.MemoryStatsRequest(session=session),
                                                metadata=md),
        "ListEntries": lambda: stub.ListEntries(pb.ListEntriesRequest(session=session),
                                                metadata=md),
        "EntryContext": lambda: stub.EntryContext(pb.EntryContextRequest(session=session, id=0),
                                                  metadata=md),
        "SearchMemory": lambda: stub.SearchMemory(
            pb.SearchMemoryRequest(session=session, text=" river"), metadata=md),
        "SaveSession": lambda: stub.SaveSession(
            pb.SaveSessionRequest(session=session, snapshot=session + "-v1", overwrite=True),
            metadata=md),
        "LoadSession": lambda: stub.LoadSession(
            pb.LoadSessionRequest(snapshot=session + "-v1", session=session + "-copy"),
            metadata=md),
        "DeleteSession": lambda: stub.DeleteSession(pb.DeleteSessionRequest(session=session),
                                                    metadata=md),
    }


READS = ["GetServerInfo", "GetSession", "ListSessions", "Generate", "Score", "MemoryStats",
         "ListEntries", "EntryContext", "SearchMemory"]
WRITES = ["CreateSession", "Ingest", "DeleteDocument", "SaveSession", "LoadSession",
          "DeleteSession"]


@pytest.fixture(scope="module")
def stub(keyed_server):
    channel = grpc.insecure_channel(keyed_server.address)
    yield pb_grpc.FotStub(channel)
    channel.close()


def make_session(stub, name, key=KEYS["admin"]):
    """A fresh session `name` with one document, made with `key`."""
    admin = bearer(KEYS["admin"])
    if code_of(lambda: stub.GetSession(pb.GetSessionRequest(session=name), metadata=admin)) == \
            grpc.StatusCode.OK:
        stub.DeleteSession(pb.DeleteSessionRequest(session=name), metadata=admin)
    stub.CreateSession(pb.CreateSessionRequest(name=name), metadata=bearer(key))
    list(stub.Ingest(ingest_requests(name), metadata=bearer(key)))


# --- API keys ---------------------------------------------------------------


def test_every_method_without_a_key_is_unauthenticated(stub):
    make_session(stub, "s")
    for method, call in every_call(stub, None).items():
        assert code_of(call) == grpc.StatusCode.UNAUTHENTICATED, method
    assert "authorization: Bearer" in details_of(every_call(stub, None)["GetSession"])


def test_a_wrong_or_malformed_key_is_unauthenticated(stub):
    make_session(stub, "s")
    for key in ["wrong-0123456789abcdef0123456789", KEYS["admin"] + "x", KEYS["admin"][:-1]]:
        for method, call in every_call(stub, key).items():
            assert code_of(call) == grpc.StatusCode.UNAUTHENTICATED, (key, method)
    basic = [("authorization", f"Basic {KEYS['admin']}")]
    assert code_of(lambda: stub.ListSessions(pb.ListSessionsRequest(), metadata=basic)) == \
        grpc.StatusCode.UNAUTHENTICATED


def test_a_read_only_key_reads_but_cannot_write(stub):
    make_session(stub, "s")
    calls = every_call(stub, KEYS["reader"])
    for method in READS:
        assert code_of(calls[method]) == grpc.StatusCode.OK, method
    for method in WRITES:
        assert code_of(calls[method]) == grpc.StatusCode.PERMISSION_DENIED, method
    assert "read-write" in details_of(calls["Ingest"])
    assert "read-only" in details_of(calls["Ingest"])
    # keep_turn appends to the session: a write.
    keep = pb.GenerateRequest(session="s", question=" The", max_tokens=1, keep_turn=True)
    assert code_of(lambda: stub.Generate(keep, metadata=bearer(KEYS["reader"]))) == \
        grpc.StatusCode.PERMISSION_DENIED
    # Nothing was written: the document is still there, the session too.
    info = stub.GetSession(pb.GetSessionRequest(session="s"), metadata=bearer(KEYS["reader"]))
    assert [d.name for d in info.documents] == ["doc"]


def test_read_write_and_admin_keys_do_everything(stub):
    for key in [KEYS["writer"], KEYS["admin"]]:
        name = "w" if key == KEYS["writer"] else "a"
        calls = every_call(stub, key, name)
        for method in ["CreateSession", "Ingest"] + READS + ["SaveSession", "LoadSession",
                                                             "DeleteDocument", "DeleteSession"]:
            assert code_of(calls[method]) == grpc.StatusCode.OK, (name, method)
        keep = pb.GenerateRequest(session=name + "-copy", question=" The", max_tokens=1,
                                  keep_turn=True)
        assert code_of(lambda: stub.Generate(keep, metadata=bearer(key))) == grpc.StatusCode.OK


def test_a_prefix_key_touches_and_lists_only_its_own_names(stub):
    make_session(stub, "bob-notes")
    stub.SaveSession(pb.SaveSessionRequest(session="bob-notes", snapshot="bob-v1",
                                           overwrite=True), metadata=bearer(KEYS["admin"]))
    make_session(stub, "alice-notes", key=KEYS["alice"])
    alice = bearer(KEYS["alice"])
    # Its own session: everything a read-write key may do.
    for method, call in every_call(stub, KEYS["alice"], "alice-x").items():
        assert code_of(call) == grpc.StatusCode.OK, method
    # Anyone else's: refused, whatever the method.
    for method, call in every_call(stub, KEYS["alice"], "bob-notes").items():
        if method in ["GetServerInfo", "ListSessions"]:
            continue
        assert code_of(call) == grpc.StatusCode.PERMISSION_DENIED, method
    assert "alice-" in details_of(every_call(stub, KEYS["alice"], "bob-notes")["GetSession"])
    # A snapshot is a name too: neither saved under another prefix nor loaded from one.
    assert code_of(lambda: stub.SaveSession(pb.SaveSessionRequest(
        session="alice-notes", snapshot="bob-v1", overwrite=True), metadata=alice)) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: stub.LoadSession(pb.LoadSessionRequest(
        snapshot="bob-v1", session="alice-stolen"), metadata=alice)) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: stub.LoadSession(pb.LoadSessionRequest(snapshot="bob-v1"),
                                            metadata=alice)) == grpc.StatusCode.PERMISSION_DENIED
    stub.SaveSession(pb.SaveSessionRequest(session="alice-notes", snapshot="alice-v1",
                                           overwrite=True), metadata=alice)
    listed = stub.ListSessions(pb.ListSessionsRequest(), metadata=alice)
    assert {s.name for s in listed.sessions} == {"alice-notes", "alice-x-copy"}
    assert set(listed.snapshots) == {"alice-v1", "alice-x-v1"}
    everything = stub.ListSessions(pb.ListSessionsRequest(), metadata=bearer(KEYS["reader"]))
    assert {"alice-notes", "bob-notes"} <= {s.name for s in everything.sessions}
    assert {"alice-v1", "bob-v1"} <= set(everything.snapshots)


def test_health_checking_needs_no_key(keyed_server):
    with grpc.insecure_channel(keyed_server.address) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        assert check(b"", timeout=10) == b"\x08\x01"  # status: SERVING


def reflection_services(address, metadata):
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(REFLECTION, request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
        return b"".join(call(iter([LIST_SERVICES]), metadata=metadata, timeout=10))


def test_reflection_needs_a_valid_key(keyed_server):
    for metadata in [[], bearer("wrong-0123456789abcdef0123456789")]:
        with pytest.raises(grpc.RpcError) as error:
            reflection_services(keyed_server.address, metadata)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert b"fot.v1.Fot" in reflection_services(keyed_server.address, bearer(KEYS["reader"]))


def test_the_python_client_sends_its_key(keyed_server):
    with fotserve.Client(keyed_server.address, api_key=KEYS["alice"], timeout=60) as client:
        session = client.create_session("alice-py")
        session.ingest(TEXT, document="doc")
        assert session.ask(" The river", max_tokens=2).text is not None
        assert "alice-py" in client.sessions()
        with pytest.raises(fotserve.FotserveError) as error:
            client.session("bob-notes").info()
        assert error.value.code == grpc.StatusCode.PERMISSION_DENIED
    with fotserve.Client(keyed_server.address, timeout=60) as anonymous:
        with pytest.raises(fotserve.FotserveError) as error:
            anonymous.sessions()
        assert error.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_refused_calls_are_logged_with_their_method_and_peer(stub, keyed_server):
    time.sleep(1.1)  # a new window of the log's rate limit, past the floods of earlier tests
    wrong = "wrong-fedcba9876543210fedcba98765"
    code_of(every_call(stub, wrong)["GetSession"])
    code_of(every_call(stub, KEYS["reader"])["DeleteSession"])
    log = keyed_server.log.read_text()
    assert "refused grpc GetSession from ipv4:127.0.0.1:" in log, log
    assert "refused grpc DeleteSession from ipv4:127.0.0.1:" in log, log
    assert "PERMISSION_DENIED" in log and "UNAUTHENTICATED" in log, log
    assert wrong not in log and KEYS["reader"] not in log
    assert code_of(every_call(stub, KEYS["admin"])["GetServerInfo"]) == grpc.StatusCode.OK
    assert keyed_server.log.read_text() == log  # an allowed call adds no line


def test_keys_never_reach_the_servers_log(stub, keyed_server):
    code_of(every_call(stub, "wrong-0123456789abcdef0123456789")["GetSession"])
    log = keyed_server.log.read_text()
    assert "serving" in log
    for key in list(KEYS.values()) + ["wrong-0123456789abcdef0123456789"]:
        assert key not in log


# --- startup -----------------------------------------------------------------


def test_a_malformed_key_file_is_refused_by_line_number_without_the_key(workdir):
    path = workdir / "bad_keys.txt"
    path.write_text(f"# keys\n{KEYS['admin']} admin\n{KEYS['reader']} read-only owner\n")
    result = start_failure(workdir, "--api_keys", str(path))
    assert result.returncode != 0
    assert "line 3" in result.stderr, result.stderr
    assert KEYS["reader"] not in result.stderr and KEYS["admin"] not in result.stderr
    empty = workdir / "empty_keys.txt"
    empty.write_text("# nothing yet\n")
    result = start_failure(workdir, "--api-keys", str(empty))
    assert result.returncode != 0 and "no API key" in result.stderr, result.stderr
    result = start_failure(workdir, "--api-keys", str(workdir / "missing.txt"))
    assert result.returncode != 0 and "missing.txt" in result.stderr, result.stderr


def test_tls_files_are_checked_at_startup(workdir, certs):
    cases = [
        (["--tls_cert", str(certs / "server.pem")], "--tls-key"),
        (["--tls_cert", str(certs / "server.pem"), "--tls_key", str(certs / "client.key")],
         "not the private key"),
        (["--tls_cert", str(certs / "server.key"), "--tls_key", str(certs / "server.key")],
         "no PEM certificate"),
        (["--tls_client_ca", str(certs / "ca.pem")], "--tls-cert"),
    ]
    for flags, expected in cases:
        result = start_failure(workdir, *flags)
        assert result.returncode != 0, flags
        assert expected in result.stderr, (flags, result.stderr)


def test_a_non_loopback_address_without_tls_or_keys_warns(workdir, key_file, certs):
    def warnings(*flags):
        log = workdir / "wide.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                [os.environ["FOT_SERVER"], "--model", os.environ["FOT_MODEL"],
                 "--listen", "0.0.0.0:0", *flags], stderr=out)
        try:
            deadline = time.time() + 60
            while "serving" not in log.read_text() and time.time() < deadline:
                assert process.poll() is None, log.read_text()
                time.sleep(0.05)
        finally:
            process.terminate()
            process.wait()
        return [line for line in log.read_text().splitlines() if "warning" in line]

    both = warnings()
    assert any("--api-keys" in w for w in both) and any("TLS" in w for w in both), both
    only_tls = warnings("--api_keys", str(key_file))
    assert len(only_tls) == 1 and "TLS" in only_tls[0], only_tls
    none = warnings("--api_keys", str(key_file), "--tls_cert", str(certs / "server.pem"),
                    "--tls_key", str(certs / "server.key"))
    assert none == []


# --- TLS -----------------------------------------------------------------------


def tls_channel(address, certs, client=None, ca="ca.pem"):
    key = (certs / f"{client}.key").read_bytes() if client else None
    chain = (certs / f"{client}.pem").read_bytes() if client else None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(certs / ca).read_bytes() if ca else None,
        private_key=key, certificate_chain=chain)
    return grpc.secure_channel(address, credentials)


def list_code(channel, key=None):
    stub = pb_grpc.FotStub(channel)
    return code_of(lambda: stub.ListSessions(pb.ListSessionsRequest(), metadata=bearer(key),
                                             timeout=10))


def test_a_tls_server_refuses_plaintext_and_serves_clients_that_trust_its_ca(tls_server, certs):
    with grpc.insecure_channel(tls_server.address) as plain:
        assert list_code(plain, KEYS["reader"]) == grpc.StatusCode.UNAVAILABLE
    with tls_channel(tls_server.address, certs, ca="other-ca.pem") as untrusting:
        assert list_code(untrusting, KEYS["reader"]) == grpc.StatusCode.UNAVAILABLE
    with tls_channel(tls_server.address, certs) as trusting:
        assert list_code(trusting, KEYS["reader"]) == grpc.StatusCode.OK
        assert list_code(trusting) == grpc.StatusCode.UNAUTHENTICATED  # keys still apply
    with tls_channel(f"localhost:{tls_server.port}", certs) as by_name:
        assert list_code(by_name, KEYS["reader"]) == grpc.StatusCode.OK
    with fotserve.Client(tls_server.address, api_key=KEYS["admin"],
                         tls=str(certs / "ca.pem"), timeout=60) as client:
        assert isinstance(client.sessions(), list)


def test_mutual_tls_needs_a_client_certificate_from_the_ca(mtls_server, certs):
    with tls_channel(mtls_server.address, certs) as anonymous:
        assert list_code(anonymous) == grpc.StatusCode.UNAVAILABLE
    with tls_channel(mtls_server.address, certs, client="stranger") as stranger:
        assert list_code(stranger) == grpc.StatusCode.UNAVAILABLE
    with tls_channel(mtls_server.address, certs, client="client") as known:
        assert list_code(known) == grpc.StatusCode.OK
    with grpc.insecure_channel(mtls_server.address) as plain:
        assert list_code(plain) == grpc.StatusCode.UNAVAILABLE


def test_the_python_client_presents_its_certificate_to_a_mutual_tls_server(mtls_server, certs):
    ca = str(certs / "ca.pem")
    with fotserve.Client(mtls_server.address, tls=ca, timeout=60,
                         client_cert=(str(certs / "client.pem"),
                                      (certs / "client.key").read_bytes())) as client:
        assert isinstance(client.sessions(), list)
    with fotserve.Client(mtls_server.address, tls=ca, timeout=60) as anonymous:
        with pytest.raises(fotserve.UnavailableError):
            anonymous.sessions()
    with pytest.raises(ValueError):
        fotserve.Client(mtls_server.address, client_cert=(b"cert", b"key"))


# --- fotctl ------------------------------------------------------------------------


def run_fotctl(fotctl, server, *args, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "FOTSERVE_API_KEY"}
    environment.update(env or {})
    return subprocess.run([fotctl, "--server", server.address, *args], capture_output=True,
                          text=True, timeout=120, env=environment)


def test_fotctl_takes_its_key_from_a_file_or_the_environment(fotctl, keyed_server, workdir):
    key_path = workdir / "alice.key"
    key_path.write_text(KEYS["alice"] + "\n")
    text = workdir / "notes.txt"
    text.write_text(TEXT)
    ok = run_fotctl(fotctl, keyed_server, "--api_key_file", str(key_path),
                    "sessions", "create", "alice-cli")
    assert ok.returncode == 0, ok.stderr
    ok = run_fotctl(fotctl, keyed_server, "--api-key-file", str(key_path), "--quiet",
                    "ingest", "alice-cli", str(text))
    assert ok.returncode == 0, ok.stderr
    ok = run_fotctl(fotctl, keyed_server, "ask", "alice-cli", " The river", "--max-tokens", "2",
                    env={"FOTSERVE_API_KEY": KEYS["alice"]})
    assert ok.returncode == 0, ok.stderr
    listed = run_fotctl(fotctl, keyed_server, "--json", "sessions", "ls",
                        env={"FOTSERVE_API_KEY": KEYS["alice"]})
    assert listed.returncode == 0 and "alice-cli" in listed.stdout and "bob" not in listed.stdout

    # The file wins over the environment.
    wrong = run_fotctl(fotctl, keyed_server, "--api_key_file", str(key_path), "sessions", "ls",
                       env={"FOTSERVE_API_KEY": "wrong-0123456789abcdef0123456789"})
    assert wrong.returncode == 0, wrong.stderr

    missing = run_fotctl(fotctl, keyed_server, "sessions", "ls")
    assert missing.returncode == 1 and "API key" in missing.stderr, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    denied = run_fotctl(fotctl, keyed_server, "sessions", "rm", "bob-notes",
                        env={"FOTSERVE_API_KEY": KEYS["alice"]})
    assert denied.returncode == 1 and "alice-" in denied.stderr, denied.stderr
    assert KEYS["alice"] not in denied.stderr
    no_file = run_fotctl(fotctl, keyed_server, "--api_key_file", str(workdir / "nope.key"),
                         "sessions", "ls")
    assert no_file.returncode != 0 and "nope.key" in no_file.stderr, no_file.stderr


def test_fotctl_speaks_tls_and_mutual_tls(fotctl, tls_server, mtls_server, certs, workdir):
    key = {"FOTSERVE_API_KEY": KEYS["writer"]}
    ok = run_fotctl(fotctl, tls_server, "--tls", "--tls_ca", str(certs / "ca.pem"), "info",
                    env=key)
    assert ok.returncode == 0, ok.stderr
    ok = run_fotctl(fotctl, tls_server, "--tls-ca", str(certs / "ca.pem"),
                    "sessions", "create", "tls-cli", env=key)  # --tls-ca implies --tls
    assert ok.returncode == 0, ok.stderr
    plain = run_fotctl(fotctl, tls_server, "info", env=key)
    assert plain.returncode == 1 and "--tls" in plain.stderr, plain.stderr
    untrusted = run_fotctl(fotctl, tls_server, "--tls", "--tls_ca", str(certs / "other-ca.pem"),
                           "info", env=key)
    assert untrusted.returncode == 1 and "TLS handshake failed" in untrusted.stderr
    # One line each, as every fotctl error: gRPC's own log stays quiet.
    assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    assert len(untrusted.stderr.strip().splitlines()) == 1, untrusted.stderr

    cert = ["--tls_ca", str(certs / "ca.pem"), "--tls_cert", str(certs / "client.pem"),
            "--tls_key", str(certs / "client.key")]
    ok = run_fotctl(fotctl, mtls_server, *cert, "sessions", "ls")
    assert ok.returncode == 0, ok.stderr
    anonymous = run_fotctl(fotctl, mtls_server, "--tls", "--tls_ca", str(certs / "ca.pem"),
                           "sessions", "ls")
    assert anonymous.returncode == 1, anonymous.stderr
    half = run_fotctl(fotctl, mtls_server, "--tls_ca", str(certs / "ca.pem"),
                      "--tls_cert", str(certs / "client.pem"), "sessions", "ls")
    assert half.returncode == 2 and "--tls-key" in half.stderr, half.stderr
