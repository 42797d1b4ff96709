"""Starts the real fot-server (FOT_SERVER) with models/fot-dict (FOT_MODEL)
on a free loopback port, with a fresh data directory."""

import os
import re
import subprocess
import time

import pytest

import fotserve


class Server:
    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.port = 0
        self.process = None

    def start(self, *flags: str) -> None:
        listen = f"127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [os.environ["FOT_SERVER"], "--model", os.environ["FOT_MODEL"], "--listen", listen,
             "--data_dir", self.data_dir, *flags],
            stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        for line in self.process.stderr:
            found = re.search(r"serving .* on 127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                break
            if time.time() > deadline:
                break
        assert self.port, "fot-server did not start"
        # Keep draining stderr so the server never blocks on a full pipe.
        self._drain = subprocess.Popen(["cat"], stdin=self.process.stderr,
                                       stdout=subprocess.DEVNULL)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._drain.wait()

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(str(tmp_path_factory.mktemp("data")))
    s.start()
    yield s
    s.kill()


@pytest.fixture
def client(server):
    with fotserve.Client(server.address, timeout=60) as c:
        yield c
