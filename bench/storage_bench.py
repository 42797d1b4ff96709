#!/usr/bin/python3
"""Storage benchmark (issue 15, item 8): what durability costs fot-server.

Starts the real fot-server (a copy of build/fot-server taken at the start,
so that a rebuild during the run cannot mix two servers) twice side by side,
one with --data_dir (durable) and one without (memory only), drives both with
the same deterministic documents through the Python client
(client/python/fotserve, raw stubs where the package hides what is timed),
and prints figures and ratios measured in this run:

  1. acknowledgement latency, one 512-byte text chunk in flight: the time to
     the chunk's IngestResponse, and the time until an IngestResponse's
     resume_offset covers the chunk (its data is saved), p50/p99/max at each
     memory size (models/fot-dict) and at --mid-tokens on the mid-size random
     model; the ratio p99(largest)/p99(smallest). Twice: once with each
     chunk sent as soon as the previous one is acknowledged (faster than the
     model: acknowledgements then wait for the committer's backlog, so they
     show the model's window time), and once at a steady --paced-rate chunks
     per second that every size's model keeps up with;
  2. ingest tokens/s of the same fill documents durable and in memory, and
     the ratio: wall time until the server is idle again (work left after
     the last acknowledgement counts), and tokens per server CPU second,
     which other jobs on the machine barely move;
  3. bytes in the data directory per memory (committed) token, at each size;
  4. restart of the largest session, stopped by SIGKILL and by SIGTERM while
     an ingest is in flight: the time from the new process's start until
     GetSession and Score on the session succeed, and whether every
     acknowledged offset came back.

Each size is reached by filling the session as fast as the server goes (text
documents in the client's 64 KiB chunks), then measured. The measured chunks
also enter memory, so each point gives the memory range it spans. Every
latency figure comes with the in-memory server's, the model's own cost: what
durability adds is the difference.

    PYTHONPATH=build/python /usr/bin/python3 bench/storage_bench.py [--quick]
        [--sizes 10000,100000,1000000] [--acks 200] [--mid-size on|off]
        [--mid-tokens 100000] [--paced-acks 100] [--paced-rate 2] [--model DIR] [--workdir DIR] [--server PATH]
        [--server-args "--flag=value ..."] [--retrieval knn:64] [--index ivf]

Needs Debian's python3-grpcio and python3-protobuf (the python3 first on PATH
may lack them: call /usr/bin/python3) and the stubs the build writes into
build/python.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import queue
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import fotserve
except ImportError:  # no PYTHONPATH: the package as the build leaves it
    sys.path.insert(0, os.path.join(REPO, "build", "python"))
    import fotserve
from fotserve._proto import fot_pb2 as pb  # noqa: E402
from fotserve._proto import fot_pb2_grpc as pb_grpc  # noqa: E402

# The targets.
ACK_P99_TARGET_MS = 100.0
ACK_GROWTH_TARGET = 1.5  # p99 at the largest size / p99 at the smallest
DURABLE_THROUGHPUT_TARGET = 0.90  # durable tokens/s / in-memory tokens/s
RESTART_TARGET_S = 10.0

# Fill documents of 256 KiB (~85k tokens), the two servers taking turns
# document by document, so that load from other jobs on the machine falls on
# both alike.
FILL_DOCUMENT_BYTES = 256 << 10
SETTLE_WINDOW_S = 0.1  # a server has settled once it used under 10% of a core
SETTLE_CPU_S = 0.01  # ...in such a window
RESTART_INFLIGHT_ACKS = 10  # acknowledged chunks of the in-flight ingest before a stop
RETRY_INTERVAL_S = 0.05  # how often a client retries while the server restarts
SERVE_DEADLINE_S = 900.0

# The filler vocabulary of models/fot-dict's passkey task (tools/fot_data.py),
# so its tokenizer cuts the text into its own pieces.
NOUNS = ("grass sky sun moon river tree stone bird house road hill cloud sea field "
         "lamp door book cat dog apple").split()
ADJECTIVES = ("green blue yellow red quiet warm cold bright dark old new small big soft "
              "calm wide").split()
VERBS = "sees finds likes follows passes meets".split()
FIXED = ["here we go.", "there and back again."]


# ---------------------------------------------------------------------------
# Documents


def sentences(seed: int) -> Iterator[str]:
    """Filler sentences without end, drawn from random.Random(seed)."""
    rng = random.Random(seed)
    while True:
        r = rng.randrange(10)
        if r == 0:
            yield rng.choice(FIXED)
        elif r < 6:
            yield f"the {rng.choice(NOUNS)} is {rng.choice(ADJECTIVES)}."
        else:
            yield (f"a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS)} "
                   f"the {rng.choice(NOUNS)}.")


def document_text(seed: int, size: int) -> str:
    """`size` bytes of filler (ASCII), cut wherever the size falls."""
    parts, length = [], 0
    for s in sentences(seed):
        if length >= size:
            break
        parts.append(s)
        length += len(s) + 1
    return " ".join(parts)[:size]


def text_chunks(seed: int, size: int) -> Iterator[str]:
    """Filler in chunks of exactly `size` bytes, cut even inside a word, as a
    client streaming a file would."""
    buffer = ""
    for s in sentences(seed):
        buffer += s + " "
        while len(buffer) >= size:
            yield buffer[:size]
            buffer = buffer[size:]


# ---------------------------------------------------------------------------
# The server process


def _die_with_parent() -> None:
    # A benchmark killed by Ctrl-C or a timeout must not leave servers behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Server:
    """One fot-server child process, its output in a log file of its own."""

    def __init__(self, binary: str, model: str, data_dir: Optional[str], log_prefix: str,
                 extra_args: Sequence[str] = ()):
        self.binary, self.model, self.data_dir = binary, model, data_dir
        self.log_prefix, self.extra_args = log_prefix, list(extra_args)
        self.port = 0
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0
        self.started_at = 0.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        return f"{self.log_prefix}.{self.starts}.log"

    def launch(self) -> None:
        """Starts the process (on the previous port, if it had one); returns at once."""
        self.starts += 1
        args = [self.binary, "--model", self.model, "--listen", f"127.0.0.1:{self.port}"]
        if self.data_dir:
            args += ["--data_dir", self.data_dir]
        with open(self.log_path, "w") as log:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(args + self.extra_args, stdout=log, stderr=log,
                                            preexec_fn=_die_with_parent)

    def wait_listening(self, deadline_s: float = SERVE_DEADLINE_S) -> None:
        """Waits for "serving ... on 127.0.0.1:PORT" in the log."""
        deadline = time.perf_counter() + deadline_s
        while time.perf_counter() < deadline:
            found = re.search(r"serving .* on 127\.0\.0\.1:(\d+)", self.log())
            if found:
                self.port = int(found.group(1))
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"fot-server exited ({self.process.returncode}):\n{self.log()}")
            time.sleep(0.01)
        raise RuntimeError(f"fot-server did not listen in {deadline_s:.0f} s:\n{self.log()}")

    def start(self) -> None:
        self.launch()
        self.wait_listening()

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Sends `sig` and waits for the exit; returns the seconds it took."""
        start = time.perf_counter()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.perf_counter() - start

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def wait_for_file(path: str, executable: bool = True, patience_s: float = 600) -> None:
    # Another job may be relinking the binary; it comes back within minutes.
    deadline = time.time() + patience_s
    while not os.access(path, os.X_OK if executable else os.R_OK):
        if time.time() > deadline:
            raise FileNotFoundError(f"{path} is missing (build it first)")
        print(f"waiting for {path} to reappear...", file=sys.stderr)
        time.sleep(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, limit_s: float = 300) -> Tuple[float, float]:
    """Waits until the process is idle, and returns when its work ended and
    its CPU seconds then. Work a server does after its last acknowledgement
    (a background checkpoint) is its own cost, and must not slow the other
    server's turn."""
    deadline = time.perf_counter() + limit_s
    at, cpu = time.perf_counter(), cpu_seconds(pid)
    while at < deadline:
        time.sleep(SETTLE_WINDOW_S)
        now, now_cpu = time.perf_counter(), cpu_seconds(pid)
        if now_cpu - cpu < SETTLE_CPU_S:
            break
        at, cpu = now, now_cpu
    return at, cpu


def freeze_binaries(args) -> None:
    """Copies fot-server, fot-make-model and the tokenizer module (found next
    to the binary) into the work folder: a rebuild of build/ during a long run
    must not mix two servers in one set of figures."""
    target = os.path.join(args.workdir, "bin")
    os.makedirs(target, exist_ok=True)
    wait_for_file(args.server)
    shutil.copy2(args.server, target)
    for name in ("fot-make-model", "libfot_spm.so"):
        # A server copied elsewhere (an older build) takes these from build/.
        beside = os.path.join(os.path.dirname(args.server), name)
        source = beside if os.path.exists(beside) else os.path.join(REPO, "build", name)
        wait_for_file(source, executable=name != "libfot_spm.so")
        shutil.copy2(source, target)
    args.server_built = time.strftime("%Y-%m-%d %H:%M:%S",
                                      time.localtime(os.path.getmtime(args.server)))
    args.server = os.path.join(target, os.path.basename(args.server))


def stub_for(address: str) -> pb_grpc.FotStub:
    return pb_grpc.FotStub(grpc.insecure_channel(address))


def disk_bytes(path: str) -> Tuple[int, int]:
    """(allocated, apparent) bytes of the files under `path`, each inode once:
    du and du --apparent-size. They differ where a store preallocates a log."""
    seen, allocated, apparent = set(), 0, 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                allocated += st.st_blocks * 512
                apparent += st.st_size
    return allocated, apparent


# ---------------------------------------------------------------------------
# One chunk in flight


class AckStream:
    """One Ingest call that sends a chunk only once the previous one is
    acknowledged, so each acknowledgement's time is that chunk's alone."""

    def __init__(self, stub: pb_grpc.FotStub, session: str, document: str):
        self._requests: "queue.Queue[Optional[pb.IngestRequest]]" = queue.Queue()
        self._requests.put(pb.IngestRequest(open=pb.IngestOpen(session=session,
                                                               document=document)))
        self._responses = stub.Ingest(iter(self._requests.get, None))
        self.open_ack = next(self._responses)

    def send(self, text: str, end: bool = False) -> Tuple[pb.IngestResponse, float, float]:
        """The chunk's acknowledgement, when it was sent and when it arrived."""
        sent = time.perf_counter()
        self._requests.put(pb.IngestRequest(chunk=pb.IngestChunk(text=text, end_of_document=end)))
        ack = next(self._responses)
        return ack, sent, time.perf_counter()

    def close(self) -> None:
        """Ends the request stream (so gRPC's sending thread finishes) and
        reads what is left; a call that already failed has nothing left."""
        self._requests.put(None)
        try:
            for _ in self._responses:
                pass
        except grpc.RpcError:
            pass


@dataclass
class AckPoint:
    """Acknowledgements measured at one memory size."""

    memory_from: int = 0  # committed tokens when the measurement began
    memory_to: int = 0
    response_ms: List[float] = field(default_factory=list)  # send -> its IngestResponse
    durable_ms: List[float] = field(default_factory=list)  # send -> resume_offset covers it


def measure_acks(stub: pb_grpc.FotStub, session: str, document: str, acks: int,
                 chunk_bytes: int, seed: int, interval_s: float = 0.0) -> AckPoint:
    """Streams `acks` chunks of text, one in flight, then ends the document.

    With interval_s 0 each chunk goes as soon as the previous one is
    acknowledged: a client that outpaces the model, whose acknowledgements
    then wait for it (the server's backlog limit). With interval_s > 0, chunk
    i goes at i * interval_s (or once chunk i - 1 is acknowledged, if later):
    a client streaming at a steady rate.

    A chunk counts as saved once some acknowledgement's resume_offset reaches
    what the server took of it: the chunk's end less the bytes its own
    acknowledgement reports held back (an unfinished word)."""
    point = AckPoint()
    stream = AckStream(stub, session, document)
    point.memory_from = stream.open_ack.committed_tokens
    unsaved: List[Tuple[int, float]] = []  # (offset to reach, sent at), in order
    end = 0
    chunks = text_chunks(seed, chunk_bytes)
    begin = time.perf_counter()
    try:
        for i in range(acks + 1):
            last = i == acks  # an empty last chunk ends the document (and forces a save)
            text = "" if last else next(chunks)
            if interval_s > 0:
                time.sleep(max(0.0, begin + i * interval_s - time.perf_counter()))
            ack, sent, received = stream.send(text, end=last)
            end += len(text)
            if not last:
                point.response_ms.append((received - sent) * 1e3)
                unsaved.append((end - ack.pending_bytes, sent))
            while unsaved and unsaved[0][0] <= ack.resume_offset:
                point.durable_ms.append((received - unsaved.pop(0)[1]) * 1e3)
            point.memory_to = ack.committed_tokens
    finally:
        stream.close()
    return point


# ---------------------------------------------------------------------------
# Filling a session to a size


@dataclass
class Fill:
    tokens: int = 0  # stream tokens added
    seconds: float = 0.0  # from the first chunk until the server settled
    cpu_seconds: float = 0.0  # the server's, over the same time

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def cpu_rate(self) -> float:
        """Tokens per CPU second: what other jobs on the machine barely move."""
        return self.tokens / self.cpu_seconds if self.cpu_seconds else 0.0


class Target:
    """One server and the session the benchmark grows on it."""

    def __init__(self, server: Server, label: str, session: str, retrieval: str, index: str):
        self.server, self.label, self.name = server, label, session
        self.client = fotserve.Client(server.address, timeout=600)
        self.session = self.client.create_session(session, retrieval=retrieval, index=index)
        self.stub = stub_for(server.address)
        info = self.client.server_info()
        # Committed tokens trail the stream by up to a window plus L - 1.
        self.tail = int(info["window"]) + int(info["last_context_length"])
        self.documents = 0
        self.tokens_per_byte = 1 / 3  # refined by what the server reports

    def reconnect(self) -> None:
        """Fresh channels: ones that saw the server go away back off for seconds."""
        self.client.close()
        self.client = fotserve.Client(self.server.address, timeout=600)
        self.session = self.client.session(self.name)
        self.stub = stub_for(self.server.address)

    def counts(self) -> Tuple[int, int]:
        """(stream tokens, committed tokens) of the session."""
        info = self.stub.GetSession(pb.GetSessionRequest(session=self.name))
        return info.stream_tokens, info.committed_tokens

    def next_document(self) -> str:
        self.documents += 1
        return f"doc-{self.documents:04d}"

    def fill_one(self, memory_tokens: int, fill: Fill) -> bool:
        """Ingests one fill document if memory holds fewer than
        `memory_tokens` tokens, and adds what it cost to `fill`. The sizes
        follow only from the server's counts, so two servers given the same
        documents ingest the same documents."""
        stream, committed = self.counts()
        if committed >= memory_tokens:
            return False
        wanted = (memory_tokens - committed + self.tail) / self.tokens_per_byte
        size = int(min(FILL_DOCUMENT_BYTES, max(4096, wanted)))
        document = self.next_document()
        text = document_text(seed=self.documents, size=size)
        pid = self.server.process.pid
        start, cpu_start = time.perf_counter(), cpu_seconds(pid)
        self.session.ingest(text, document=document)
        end, cpu_end = settle(pid)
        fill.seconds += end - start
        fill.cpu_seconds += cpu_end - cpu_start
        new_stream, committed = self.counts()
        self.tokens_per_byte = (new_stream - stream) / size
        fill.tokens += new_stream - stream
        progress(f"{self.label}: {document}, {size} bytes; memory {committed} tokens")
        return True

    def acks(self, count: int, chunk_bytes: int, interval_s: float = 0.0) -> AckPoint:
        document = self.next_document()
        point = measure_acks(self.stub, self.name, document, count, chunk_bytes,
                             seed=self.documents, interval_s=interval_s)
        settle(self.server.process.pid)
        paced = f" every {interval_s * 1e3:.0f} ms" if interval_s > 0 else ""
        progress(f"{self.label}: {count} acknowledgements{paced}, memory "
                 f"{point.memory_from}-{point.memory_to} tokens, "
                 f"p99 {percentile(point.response_ms, 99):.1f} ms")
        return point


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# ---------------------------------------------------------------------------
# Restart


@dataclass
class Restart:
    signal_name: str
    stop_s: float = 0.0  # signal -> the process exited
    listen_s: float = 0.0  # new process started -> "serving" in its log
    serve_s: float = 0.0  # new process started -> GetSession and Score succeed
    memory_tokens: int = 0  # committed tokens of the session after the restart
    acked_offset: int = 0  # the in-flight document's last acknowledged resume_offset
    kept_offset: int = 0  # its resume_offset after the restart

    @property
    def acked_kept(self) -> bool:
        return self.kept_offset >= self.acked_offset


class InflightIngest(threading.Thread):
    """Streams text into a document, one chunk in flight, until the server
    goes away; remembers the furthest acknowledged resume_offset."""

    def __init__(self, stub: pb_grpc.FotStub, session: str, document: str, seed: int,
                 chunk_bytes: int):
        super().__init__(daemon=True)
        self.stub, self.session, self.document = stub, session, document
        self.seed, self.chunk_bytes = seed, chunk_bytes
        self.acks = 0
        self.acked_offset = 0
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        stream = None
        try:
            stream = AckStream(self.stub, self.session, self.document)
            for text in text_chunks(self.seed, self.chunk_bytes):
                ack = stream.send(text)[0]
                self.acked_offset = max(self.acked_offset, ack.resume_offset)
                self.acks += 1
        except (grpc.RpcError, StopIteration) as e:  # the server stopped: what is waited for
            self.error = e
        finally:
            if stream is not None:
                stream.close()


def serve_probe(address: str, session: str) -> Optional[pb.SessionInfo]:
    """GetSession and a Score on the session, on a fresh connection (a kept
    channel would back off for seconds after the refused connects); None
    while the server is not there yet or is still loading."""
    channel = grpc.insecure_channel(address)
    try:
        stub = pb_grpc.FotStub(channel)
        info = stub.GetSession(pb.GetSessionRequest(session=session), timeout=30)
        stub.Score(pb.ScoreRequest(session=session, continuation=" the sky is blue."),
                   timeout=60)
        return info
    except grpc.RpcError as e:
        if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.DEADLINE_EXCEEDED):
            return None
        raise
    finally:
        channel.close()


def restart(target: Target, sig: int, chunk_bytes: int) -> Restart:
    """Stops the server with `sig` while an ingest is in flight, starts it on
    the same data directory and port, and times until the session serves."""
    result = Restart(signal.Signals(sig).name)
    writer = InflightIngest(target.stub, target.name, target.next_document(),
                            seed=target.documents, chunk_bytes=chunk_bytes)
    writer.start()
    while writer.acks < RESTART_INFLIGHT_ACKS and writer.is_alive():
        time.sleep(0.01)
    if writer.error is not None:
        raise RuntimeError(f"the in-flight ingest failed before the stop: {writer.error}")
    server = target.server
    result.stop_s = server.stop(sig)
    writer.join()
    result.acked_offset = writer.acked_offset
    server.launch()
    info = None
    while info is None:
        if server.process.poll() is not None:
            raise RuntimeError(f"fot-server exited on restart:\n{server.log()}")
        if time.perf_counter() - server.started_at > SERVE_DEADLINE_S:
            raise RuntimeError(f"the session did not serve in {SERVE_DEADLINE_S:.0f} s")
        if result.listen_s == 0 and "serving" in server.log():
            result.listen_s = time.perf_counter() - server.started_at
        info = serve_probe(server.address, target.name)
        if info is None:
            time.sleep(RETRY_INTERVAL_S)
    result.serve_s = time.perf_counter() - server.started_at
    server.wait_listening()
    target.reconnect()
    result.listen_s = result.listen_s or result.serve_s
    result.memory_tokens = info.committed_tokens
    result.kept_offset = next((d.resume_offset for d in info.documents
                               if d.name == writer.document), 0)
    progress(f"restart after {result.signal_name}: serving in {result.serve_s:.2f} s")
    return result


# ---------------------------------------------------------------------------
# Runs


@dataclass
class SizePoint:
    size: int
    fill: Dict[str, Fill] = field(default_factory=dict)  # by "durable" / "memory"
    acks: Dict[str, AckPoint] = field(default_factory=dict)
    paced: Dict[str, AckPoint] = field(default_factory=dict)  # at a steady rate
    disk_bytes: int = 0  # allocated
    disk_apparent_bytes: int = 0
    disk_memory_tokens: int = 0  # committed tokens when the data dir was measured


@dataclass
class ModelRun:
    model_name: str
    points: List[SizePoint] = field(default_factory=list)
    restarts: List[Restart] = field(default_factory=list)


def start_pair(args, model: str, tag: str) -> Tuple[Target, Target]:
    """A durable and an in-memory server on `model`, each with one session."""
    data_dir = os.path.join(args.workdir, f"{tag}-data")
    shutil.rmtree(data_dir, ignore_errors=True)
    extra = shlex.split(args.server_args)
    durable = Server(args.server, model, data_dir, os.path.join(args.workdir, f"{tag}-durable"),
                     extra)
    memory = Server(args.server, model, None, os.path.join(args.workdir, f"{tag}-memory"), extra)
    durable.start()
    memory.start()
    return (Target(durable, f"{tag} durable", "bench", args.retrieval, args.index),
            Target(memory, f"{tag} memory", "bench", args.retrieval, args.index))


def fill_pair(targets: Dict[str, Target], size: int) -> Dict[str, Fill]:
    """Fills every target's session to `size` memory tokens, one document
    each in turn."""
    fills = {key: Fill() for key in targets}
    busy = True
    while busy:
        busy = False
        for key, target in targets.items():
            busy |= target.fill_one(size, fills[key])
    return fills


def run_model(args, run: ModelRun, model: str, sizes: Sequence[int], restarts: bool) -> None:
    """Grows one session per server through `sizes`, measuring both at each;
    adds each point to `run` once it is complete."""
    durable, memory = start_pair(args, model, run.model_name)
    targets = {"durable": durable, "memory": memory}
    try:
        for size in sizes:
            point = SizePoint(size)
            point.fill = fill_pair(targets, size)
            for key, target in targets.items():
                point.acks[key] = target.acks(args.acks, args.chunk_bytes)
            for key, target in targets.items():
                if args.paced_acks > 0:
                    point.paced[key] = target.acks(args.paced_acks, args.chunk_bytes,
                                                   interval_s=1.0 / args.paced_rate)
            # The measurement ended its document, which saves the session.
            point.disk_bytes, point.disk_apparent_bytes = disk_bytes(durable.server.data_dir)
            point.disk_memory_tokens = durable.counts()[1]
            run.points.append(point)
        memory.server.stop()
        if restarts:
            for sig in (signal.SIGKILL, signal.SIGTERM):
                run.restarts.append(restart(durable, sig, args.chunk_bytes))
    finally:
        for target in (durable, memory):
            if target.server.process.poll() is None:
                target.server.stop()


def make_mid_size_model(args) -> str:
    """bench/mid_size_model.cc's model (hidden 512, 8 layers, W 512, memory
    layers 3 and 6, seed 1) through fot-make-model, whose defaults are that
    shape. A random model has no tokenizer, so it borrows fot-dict's (176
    pieces, all ids inside its vocabulary of 32000)."""
    out = os.path.join(args.workdir, "mid-size-model")
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        maker = os.path.join(os.path.dirname(args.server), "fot-make-model")
        subprocess.run([maker, "--out", out, "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
    shutil.copy(os.path.join(args.model, "tokenizer.model"), out)
    return out


# ---------------------------------------------------------------------------
# Report


def fmt_tokens(n: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n:.0f}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    print(f"\n{title}")
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)).rstrip())


def stats_ms(values: Sequence[float]) -> List[str]:
    return [f"{percentile(values, 50):.1f}", f"{percentile(values, 99):.1f}",
            f"{max(values):.1f}" if values else "nan"]


def report_acks(runs: Sequence[ModelRun], paced_rate: float) -> None:
    for title, pick in (
            ("1. Acknowledgement latency, ms, each chunk sent when the previous one is "
             "acknowledged (faster than the model commits: acknowledgements wait for its "
             "backlog to shrink); 'saved': until an acknowledgement's resume_offset covers "
             "the chunk", lambda p: p.acks),
            (f"1b. The same at a steady {paced_rate:g} chunks/s (one in flight at most)",
             lambda p: p.paced)):
        rows = []
        for run in runs:
            for p in run.points:
                for key, a in pick(p).items():
                    durable_stats = stats_ms(a.durable_ms) if key == "durable" else ["", "", ""]
                    rows.append([run.model_name, fmt_tokens(p.size), key,
                                 f"{fmt_tokens(a.memory_from)}-{fmt_tokens(a.memory_to)}",
                                 len(a.response_ms), *stats_ms(a.response_ms), *durable_stats])
        if rows:
            print_table(title, ["model", "size", "server", "memory tokens", "acks", "p50",
                                "p99", "max", "saved p50", "saved p99", "saved max"], rows)


def report_ingest(runs: Sequence[ModelRun]) -> None:
    rows = []
    for run in runs:
        for p in run.points:
            d, m = p.fill["durable"], p.fill["memory"]
            rows.append(ingest_row(run.model_name, f"to {fmt_tokens(p.size)}", d, m))
        rows.append(ingest_row(run.model_name, "all", total_fill(run, "durable"),
                               total_fill(run, "memory")))
    print_table("2. Ingest of the same fill documents: tokens/s (wall, until the server "
                "settled) and tokens per server CPU second",
                ["model", "fill", "tokens", "durable", "in memory", "durable/memory",
                 "durable/CPU s", "memory/CPU s", "ratio"], rows)


def ingest_row(model: str, what: str, d: Fill, m: Fill) -> List[str]:
    return [model, what, str(d.tokens), f"{d.rate:.0f}", f"{m.rate:.0f}", ratio(d.rate, m.rate),
            f"{d.cpu_rate:.0f}", f"{m.cpu_rate:.0f}", ratio(d.cpu_rate, m.cpu_rate)]


def report_disk(runs: Sequence[ModelRun]) -> None:
    rows = [[run.model_name, fmt_tokens(p.size), p.disk_memory_tokens,
             f"{p.disk_bytes / 2**20:.1f}", f"{p.disk_bytes / max(1, p.disk_memory_tokens):.0f}",
             f"{p.disk_apparent_bytes / 2**20:.1f}",
             f"{p.disk_apparent_bytes / max(1, p.disk_memory_tokens):.0f}"]
            for run in runs for p in run.points]
    print_table("3. Data directory after each size: allocated (du) and apparent (du "
                "--apparent-size) bytes per memory token",
                ["model", "size", "memory tokens", "MiB", "bytes/token", "apparent MiB",
                 "apparent bytes/token"], rows)


def report_restarts(runs: Sequence[ModelRun]) -> None:
    rows = [[run.model_name, fmt_tokens(r.memory_tokens), r.signal_name, f"{r.stop_s:.2f}",
             f"{r.listen_s:.2f}", f"{r.serve_s:.2f}", r.acked_offset, r.kept_offset,
             "yes" if r.acked_kept else "NO"]
            for run in runs for r in run.restarts]
    print_table("4. Restart with an ingest in flight, seconds (listen / serve: from the new "
                "process's start)",
                ["model", "memory tokens", "stop", "stop s", "listen s", "serve s",
                 "acked offset", "offset after", "acked kept"], rows)


def total_fill(run: ModelRun, key: str) -> Fill:
    return Fill(sum(p.fill[key].tokens for p in run.points),
                sum(p.fill[key].seconds for p in run.points),
                sum(p.fill[key].cpu_seconds for p in run.points))


def ratio(a: float, b: float) -> str:
    return f"{safe_div(a, b):.3f}"


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def target_row(figure: str, durable: float, memory: float, unit: str, target: str,
               met: bool) -> List[str]:
    shown = f"{memory:.1f} {unit}" if not math.isnan(memory) else ""
    return [figure, f"{durable:.1f} {unit}" if unit != "x" else f"{durable:.2f}x",
            shown if unit != "x" else (f"{memory:.2f}x" if shown else ""), target, verdict(met)]


def ack_target_rows(run: ModelRun, kind: str, label: str) -> List[List[str]]:
    """Target rows for the acknowledgements of `kind` ("acks" or "paced")."""
    points = [p for p in run.points if getattr(p, kind)]
    rows = []
    for p in points:
        d, m = getattr(p, kind)["durable"], getattr(p, kind)["memory"]
        for what, durable, memory in (("ack p99", d.response_ms, m.response_ms),
                                      ("ack p99 until saved", d.durable_ms, [])):
            v = percentile(durable, 99)
            rows.append(target_row(f"{run.model_name} {what}{label} at {fmt_tokens(p.size)}", v,
                                   percentile(memory, 99), "ms",
                                   f"<= {ACK_P99_TARGET_MS:.0f} ms", v <= ACK_P99_TARGET_MS))
    if len(points) > 1:
        first, last = getattr(points[0], kind), getattr(points[-1], kind)
        for what, pick in (("ack", lambda a: a.response_ms),
                           ("ack until saved", lambda a: a.durable_ms)):
            growth = [safe_div(percentile(pick(last[k]), 99), percentile(pick(first[k]), 99))
                      for k in ("durable", "memory")]
            rows.append(target_row(f"{run.model_name} {what} p99{label} "
                                   f"{fmt_tokens(points[-1].size)} / {fmt_tokens(points[0].size)}",
                                   growth[0], growth[1] if what == "ack" else math.nan, "x",
                                   f"<= {ACK_GROWTH_TARGET}x", growth[0] <= ACK_GROWTH_TARGET))
    return rows


def report_targets(runs: Sequence[ModelRun], paced_rate: float) -> None:
    rows = []
    for run in runs:
        rows += ack_target_rows(run, "acks", "")
        rows += ack_target_rows(run, "paced", f" ({paced_rate:g}/s)")
        d, m = total_fill(run, "durable"), total_fill(run, "memory")
        share = safe_div(d.rate, m.rate)
        rows.append([f"{run.model_name} durable / in-memory ingest", f"{share:.1%}", "",
                     f">= {DURABLE_THROUGHPUT_TARGET:.0%}",
                     verdict(share >= DURABLE_THROUGHPUT_TARGET)])
        for r in run.restarts:
            rows.append([f"{run.model_name} restart of {fmt_tokens(r.memory_tokens)} after "
                         f"{r.signal_name} (acked kept: {verdict(r.acked_kept)})",
                         f"{r.serve_s:.2f} s", "", f"<= {RESTART_TARGET_S:.0f} s",
                         verdict(r.serve_s <= RESTART_TARGET_S and r.acked_kept)])
    print_table("Against the issue's targets (the durable server; 'in memory': the same "
                "measurement without --data_dir, for what the model alone costs)",
                ["figure", "measured", "in memory", "target", "met"], rows)


def safe_div(a: float, b: float) -> float:
    return a / b if b else math.nan


# ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None,
                   help="memory sizes in tokens for the model (default 10000,100000,1000000; "
                        "--quick: 2000,20000)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: small sizes, 50 acknowledgements, mid-size at 5000")
    p.add_argument("--model", default=os.path.join(REPO, "models", "fot-dict"))
    p.add_argument("--mid-size", choices=("on", "off"), default="on",
                   help="also measure the mid-size random model at --mid-tokens")
    p.add_argument("--mid-tokens", type=int, default=None,
                   help="memory size for the mid-size model (default 100000; --quick: 5000)")
    p.add_argument("--acks", type=int, default=None,
                   help="acknowledgements per point (default 200; --quick: 50)")
    p.add_argument("--paced-acks", type=int, default=None,
                   help="acknowledgements per point at a steady rate (default 100; --quick: 20; "
                        "0: none)")
    p.add_argument("--paced-rate", type=float, default=2.0,
                   help="chunks per second of the steady-rate measurement")
    p.add_argument("--chunk-bytes", type=int, default=512, help="bytes of text per chunk")
    p.add_argument("--workdir", default=None,
                   help="data directories, server logs, the mid-size model (kept; default: a "
                        "temporary folder, removed at the end)")
    p.add_argument("--server", default=os.path.join(REPO, "build", "fot-server"))
    p.add_argument("--server-args", default="", help="extra fot-server flags, one string")
    # Dense retrieval would make every ingested window attend to all of memory,
    # so ingest time (not storage) would grow with memory; IVF is the README's
    # index for streaming ingest of large memories.
    p.add_argument("--retrieval", default="knn:64", help="the sessions' retrieval")
    p.add_argument("--index", default="ivf", help="the sessions' memory index")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in (args.sizes or
                                   ("2000,20000" if args.quick else
                                    "10000,100000,1000000")).split(",")]
    args.acks = args.acks or (50 if args.quick else 200)
    if args.paced_acks is None:
        args.paced_acks = 20 if args.quick else 100
    if args.paced_rate <= 0:
        p.error("--paced-rate must be positive")
    args.mid_tokens = args.mid_tokens or (5000 if args.quick else 100000)
    if sorted(args.sizes) != args.sizes:
        p.error("--sizes must be increasing (one session grows through them)")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    temporary = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="fot-storage-bench-")
    os.makedirs(args.workdir, exist_ok=True)
    args.model = os.path.abspath(args.model)
    freeze_binaries(args)
    start = time.perf_counter()
    runs: List[ModelRun] = []
    failure = None
    try:
        runs.append(ModelRun(os.path.basename(args.model)))
        run_model(args, runs[-1], args.model, args.sizes, restarts=True)
        if args.mid_size == "on":
            runs.append(ModelRun("mid-size"))
            run_model(args, runs[-1], make_mid_size_model(args), [args.mid_tokens],
                      restarts=False)
    except (Exception, KeyboardInterrupt) as e:  # still print what was measured
        failure = e
    finally:
        if temporary:
            shutil.rmtree(args.workdir, ignore_errors=True)
    if failure is not None:
        traceback.print_exception(type(failure), failure, failure.__traceback__)
        print("storage_bench: stopped early; the figures below are those measured before",
              file=sys.stderr)
    runs = [run for run in runs if run.points]
    print(f"storage_bench: fot-server built {args.server_built}, sessions "
          f"retrieval={args.retrieval} "
          f"index={args.index}, {args.chunk_bytes}-byte chunks, {args.acks} acknowledgements "
          f"per point, {time.perf_counter() - start:.0f} s")
    report_acks(runs, args.paced_rate)
    report_ingest(runs)
    report_disk(runs)
    report_restarts(runs)
    report_targets(runs, args.paced_rate)
    return 0 if failure is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
