"""What tools/crash_test.py and its scenarios share: the documents, the
fot-server process, connections with retries, and session fingerprints (what
a one-shot ingest must reproduce exactly)."""

from __future__ import annotations

import argparse
import math
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent

try:
    import fotserve
except ImportError:  # run without PYTHONPATH: use the build's copy
    sys.path.insert(0, str(REPO / "build" / "python"))
    import fotserve
import grpc
from fotserve._proto import fot_pb2_grpc as pb_grpc


# ---------------------------------------------------------------------------
# Documents: the text fot-dict was trained on (tools/fot_data.py), dictionary
# records and filler sentences, with a few accented words, so that chunk cuts
# must respect multi-byte characters (every chunk is whole UTF-8).

NOUNS = ("grass sky sun moon river tree stone bird house road hill cloud sea field "
         "lamp door book cat dog apple").split()
ADJS = "green blue yellow red quiet warm cold bright dark old new small big soft calm wide".split()
VERBS = "sees finds likes follows passes meets".split()
ACCENTED = ["café", "naïve", "façade", "crème", "señor"]

# A context makes Score valid on a session with no pending text yet.
SCORE_CONTEXT = " here we go."
SCORE_CONTINUATION = " the sky is blue. a warm bird sees the door."
ANSWER_TOKENS = 8


@dataclass
class Document:
    name: str
    text: str
    key: str  # the key of its first dictionary record: the probe question asks for it

    @property
    def data(self) -> bytes:
        return self.text.encode("utf-8")


def _sentence(rng: random.Random) -> str:
    noun = rng.choice(ACCENTED) if rng.random() < 0.03 else rng.choice(NOUNS)
    if rng.random() < 0.5:
        return f"the {noun} is {rng.choice(ADJS)}."
    return f"a {rng.choice(ADJS)} {noun} {rng.choice(VERBS)} the {rng.choice(NOUNS)}."


def _records(rng: random.Random, keys: List[str]) -> str:
    out = []
    for _ in range(rng.randint(2, 8)):
        key = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        keys.append(key)
        out.append(f"{key}={rng.randint(0, 9999):04d};")
    return "".join(out)  # records are written without spaces, as in training


def make_document(rng: random.Random, name: str, size: int) -> Document:
    """About `size` bytes of paragraphs: runs of records or of sentences."""
    parts: List[str] = []
    keys: List[str] = []
    length = 0
    while length < size or not keys:
        if rng.random() < 0.3:
            part = _records(rng, keys)
        else:
            part = " ".join(_sentence(rng) for _ in range(rng.randint(2, 6)))
        parts.append(part)
        length += len(part.encode("utf-8")) + 1
    return Document(name, " ".join(parts), keys[0])


def log_uniform(rng: random.Random, low: float, high: float) -> int:
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


# ---------------------------------------------------------------------------
# The server process


class ServerProcess:
    """fot-server on a loopback port it picks itself; stdout and stderr go to
    one log file (a restart appends to it)."""

    def __init__(self, args: argparse.Namespace, data_dir: Path, log_path: Path):
        self.command = [args.server, "--model", args.model, "--listen", "127.0.0.1:0",
                        "--data_dir", str(data_dir), *args.server_arg]
        self.log_path = log_path
        self.process: Optional[subprocess.Popen] = None
        self.port = 0
        self.starts = 0
        self.startup_s = 0.5  # the last start's time to "serving"; guides startup kills

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def spawn(self) -> int:
        """Starts the process without waiting; returns the log offset of its output."""
        self.starts += 1
        with open(self.log_path, "a") as log:
            log.write(f"=== crash_test: start {self.starts}\n")
            offset = log.tell()
            self.process = subprocess.Popen(self.command, stdout=log, stderr=log)
        return offset

    def start(self) -> None:
        begin = time.monotonic()
        offset = self.spawn()
        while time.monotonic() - begin < 120:
            with open(self.log_path) as log:
                log.seek(offset)
                found = re.search(r"serving .* on 127\.0\.0\.1:(\d+)", log.read())
            if found:
                self.port = int(found.group(1))
                self.startup_s = time.monotonic() - begin
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"fot-server did not start; see {self.log_path}:\n{self.log_tail()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 20) -> str:
        with open(self.log_path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])


class Connection:
    """A fresh channel per server start (no reconnect backoff to wait out):
    the client package for what it covers, the raw stub for Ingest streams,
    whose every acknowledgement the harness records."""

    def __init__(self, address: str):
        self.client = fotserve.Client(address, timeout=60)
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.FotStub(self.channel)

    def close(self) -> None:
        self.client.close()
        self.channel.close()


def code_of(error: Exception) -> Optional[grpc.StatusCode]:
    if isinstance(error, fotserve.FotserveError):
        return error.code
    if isinstance(error, grpc.RpcError):
        return error.code()
    return None


def describe(error: Exception) -> str:
    """One line: the status code and the server's message."""
    code = code_of(error)
    if isinstance(error, grpc.RpcError) and code is not None:
        return f"{code.name}: {error.details()}"
    return str(error)


RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)
RPC_ERRORS = (grpc.RpcError, fotserve.FotserveError)


def retry(call: Callable[[], Any], stop: Optional[threading.Event] = None,
          patience: float = 60.0) -> Any:
    """call(), again with a short backoff while the server answers UNAVAILABLE
    (a restarted server may still be loading the session) or ABORTED (a busy
    session), for up to `patience` seconds or until `stop` is set."""
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return call()
        except RPC_ERRORS as e:
            if code_of(e) not in RETRY_CODES or time.monotonic() > deadline:
                raise
            if stop is not None and stop.is_set():
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


@dataclass
class Round:
    """One server lifetime: the kill flag every worker looks at."""
    number: int
    killed: threading.Event = field(default_factory=threading.Event)


# ---------------------------------------------------------------------------
# Session fingerprints: what a one-shot ingest must reproduce exactly.


def fingerprint(session: "fotserve.Session", key: str) -> Dict[str, Any]:
    info = session.info()
    stats = session.memory.stats()
    return {
        "stream_tokens": int(info.get("stream_tokens", 0)),
        "committed_tokens": int(info.get("committed_tokens", 0)),
        "documents": [(d["name"], int(d.get("first_token", 0)), int(d.get("tokens", 0)),
                       bool(d.get("complete")), bool(d.get("deleted")),
                       int(d.get("resume_offset", 0))) for d in info.get("documents", [])],
        "memory": [(layer.get("layer", 0), layer.get("index", ""),
                    [(h.get("kv_head", 0), int(h.get("entries", 0)), int(h.get("live_entries", 0)))
                     for h in layer.get("heads", [])]) for layer in stats.get("layers", [])],
        "live_documents": sorted(stats.get("documents", [])),
        "score": session.score(SCORE_CONTINUATION, context=SCORE_CONTEXT).token_log_probs,
        "answer": [t.id for t in session.ask(f"?{key}=", max_tokens=ANSWER_TOKENS,
                                             ignore_eos=True).tokens],
    }


def differences(got: Dict[str, Any], want: Dict[str, Any]) -> List[str]:
    return [f"{k}: {_short(got[k])} != {_short(want[k])}" for k in want if got[k] != want[k]]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."


def one_shot(client: "fotserve.Client", name: str, options: Dict[str, Any],
             documents: List[Document]) -> "fotserve.Session":
    """The reference: each document in one chunk, no kills."""
    session = client.create_session(name, **options)
    for i, doc in enumerate(documents):
        session.ingest(doc.text, document=doc.name, chunk_bytes=len(doc.data) + 1,
                       add_bos=i == 0)
    return session
