"""The HTTP port under TLS (issue 17): started with --tls-cert and --tls-key,
fot-server's HTTP port speaks HTTPS with the gRPC port's certificate and
refuses plain HTTP; with --tls-client-ca it wants a client certificate from
those CAs, as gRPC does; API keys apply over HTTPS as over HTTP."""

import http.client
import json
import ssl
import time

import pytest

from conftest import KEYS, Server


@pytest.fixture(scope="module")
def https_server(workdir, key_file, certs):
    """TLS and API keys, with the HTTP port."""
    server = Server(workdir, "https", ["--api_keys", str(key_file),
                                       "--tls_cert", str(certs / "server.pem"),
                                       "--tls_key", str(certs / "server.key"),
                                       "--http_listen", "127.0.0.1:0"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mhttps_server(workdir, certs):
    """Mutual TLS, no keys, with the HTTP port."""
    server = Server(workdir, "mhttps", ["--tls_cert", str(certs / "server.pem"),
                                        "--tls_key", str(certs / "server.key"),
                                        "--tls_client_ca", str(certs / "ca.pem"),
                                        "--http_listen", "127.0.0.1:0"])
    yield server
    server.stop()


def tls_context(certs, client=None):
    """Trusts ca.pem; presents the certificate `client` ("client", "stranger") if given."""
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if client:
        context.load_cert_chain(str(certs / f"{client}.pem"), str(certs / f"{client}.key"))
    return context


def get(server, path, context=None, key=None):
    """GET `path` over HTTPS with `context` (plain HTTP without): (status, JSON body)."""
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", server.http_port, timeout=10,
                                                 context=context)
    try:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_http_port_says_it_serves_https(https_server):
    assert https_server.http_port
    assert "with TLS (HTTPS)" in https_server.log.read_text()
    assert "has no TLS" not in https_server.log.read_text()


def test_healthz_answers_over_https_with_the_grpc_certificate(https_server, certs):
    status, body = get(https_server, "/healthz", tls_context(certs))
    assert status == 200
    assert body["status"] == "ok"


def test_plain_http_gets_no_answer_from_the_https_port(https_server):
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        get(https_server, "/healthz")


def test_api_keys_still_apply_over_https(https_server, certs):
    context = tls_context(certs)
    assert get(https_server, "/v1/models", context)[0] == 401
    status, body = get(https_server, "/v1/models", context, key=KEYS["reader"])
    assert status == 200
    assert body["object"] == "list"


def test_mutual_tls_http_port_needs_a_client_certificate_from_its_cas(mhttps_server, certs):
    assert "with mutual TLS (HTTPS)" in mhttps_server.log.read_text()
    status, body = get(mhttps_server, "/healthz", tls_context(certs, "client"))
    assert status == 200
    for refused in (None, "stranger"):
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            get(mhttps_server, "/healthz", tls_context(certs, refused))


def test_refused_http_requests_are_logged_without_the_key(https_server, certs):
    time.sleep(1.1)  # a new window of the log's rate limit
    status, _ = get(https_server, "/v1/models", tls_context(certs), key="not-a-key-0123456789")
    assert status == 401
    log = https_server.log.read_text()
    assert "refused http GET /v1/models from 127.0.0.1:" in log, log
    assert "not-a-key-0123456789" not in log
