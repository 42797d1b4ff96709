"""Fixtures of the authentication and TLS tests: the real fot-server (FOT_SERVER)
with models/fot-dict (FOT_MODEL) and fotctl (FOTCTL), as ctest sets them
(CMakeLists.txt, security_tests), and a throwaway CA with server and client
certificates made by Debian's openssl at test time."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest


def _required(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        pytest.fail(f"{variable} is not set: run through ctest (security_tests), or set "
                    "FOT_SERVER, FOT_MODEL, FOTCTL and PYTHONPATH=build/python as "
                    "CMakeLists.txt does")
    return value


# Keys of the key file the servers start with; every scope and a prefix.
KEYS = {
    "admin": "admin-0123456789abcdef0123456789",
    "writer": "writer-0123456789abcdef012345678",
    "reader": "reader-0123456789abcdef012345678",
    "alice": "alice-0123456789abcdef0123456789",
}
KEY_FILE = f"""# fot-server API keys (tests/server/security)
{KEYS["admin"]} admin
{KEYS["writer"]}            # read-write is the default
{KEYS["reader"]} read-only
{KEYS["alice"]} read-write prefix=alice-
"""


class Server:
    """One fot-server process on a free loopback port; stderr goes to a file."""

    def __init__(self, workdir: Path, name: str, flags: list):
        self.log = workdir / f"{name}.log"
        data_dir = workdir / f"{name}-data"
        command = [_required("FOT_SERVER"), "--model", _required("FOT_MODEL"),
                   "--listen", "127.0.0.1:0", "--data_dir", str(data_dir), *flags]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, stderr=log)
        self.port = 0
        deadline = time.time() + 60
        while time.time() < deadline and self.process.poll() is None:
            found = re.search(r"serving .* on 127\.0\.0\.1:(\d+)", self.log.read_text())
            if found:
                self.port = int(found.group(1))
                break
            time.sleep(0.05)
        assert self.port, f"fot-server did not start: {self.log.read_text()}"
        # With --http_listen, the HTTP port (its line comes before the gRPC one).
        http = re.search(r"HTTP port .* listening on 127\.0\.0\.1:(\d+)", self.log.read_text())
        self.http_port = int(http.group(1)) if http else 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_failure(workdir: Path, *flags: str) -> subprocess.CompletedProcess:
    """Runs fot-server with `flags`, expecting it to refuse to start."""
    return subprocess.run([_required("FOT_SERVER"), "--model", _required("FOT_MODEL"),
                           "--listen", "127.0.0.1:0", "--data_dir", str(workdir / "refused"),
                           *flags], capture_output=True, text=True, timeout=60)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_ca(dir: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(dir / f"{name}.key"), "-out", str(dir / f"{name}.pem"),
             "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _make_cert(dir: Path, ca: str, name: str, extensions: str) -> None:
    (dir / f"{name}.ext").write_text(extensions)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(dir / f"{name}.key"), "-out", str(dir / f"{name}.csr"),
             "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(dir / f"{name}.csr"), "-CA", str(dir / f"{ca}.pem"),
             "-CAkey", str(dir / f"{ca}.key"), "-CAcreateserial", "-days", "2",
             "-out", str(dir / f"{name}.pem"), "-extfile", str(dir / f"{name}.ext"))


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    """ca.pem signs server.pem (SAN 127.0.0.1, localhost) and client.pem;
    other-ca.pem signs stranger.pem, a client certificate the servers do not trust."""
    dir = tmp_path_factory.mktemp("certs")
    _make_ca(dir, "ca")
    _make_ca(dir, "other-ca")
    _make_cert(dir, "ca", "server", "basicConstraints=CA:FALSE\n"
               "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _make_cert(dir, "ca", "client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    _make_cert(dir, "other-ca", "stranger",
               "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    return dir


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def key_file(workdir) -> Path:
    path = workdir / "api_keys.txt"
    path.write_text(KEY_FILE)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def keyed_server(workdir, key_file):
    """Plaintext on loopback, with API keys."""
    server = Server(workdir, "keyed", ["--api_keys", str(key_file)])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_server(workdir, key_file, certs):
    """TLS and API keys."""
    server = Server(workdir, "tls", ["--api_keys", str(key_file),
                                     "--tls_cert", str(certs / "server.pem"),
                                     "--tls_key", str(certs / "server.key")])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(workdir, certs):
    """Mutual TLS, no keys: a client certificate from ca.pem is the credential."""
    server = Server(workdir, "mtls", ["--tls-cert", str(certs / "server.pem"),
                                      "--tls-key", str(certs / "server.key"),
                                      "--tls-client-ca", str(certs / "ca.pem")])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fotctl() -> str:
    return _required("FOTCTL")
