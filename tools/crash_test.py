#!/usr/bin/python3
"""Crash test of fot-server's durability promises (DESIGN.md §2, issue 15 item 7).

Runs the real fot-server on a data directory, streams deterministic
pseudo-random documents into several sessions at once (one stream per session,
chunks of a few hundred bytes to a few kB) while queries run beside them, and
SIGKILLs the server at random moments. After each restart it checks that
nothing acknowledged was taken back:

  * every count an IngestResponse reported (resume_offset and document_tokens
    per document, stream_tokens and committed_tokens per session, complete)
    is still there: in GetSession, and in the acknowledgement of the reopened
    document (resume = true, offset = the last acknowledged resume_offset);
  * then each stream resumes from that offset and goes on.

When every document is complete, each session is compared with a one-shot
ingest of the same documents into a fresh session: token counts, memory entry
counts per layer and head, the exact log-probabilities of a fixed continuation
and the greedy tokens of a fixed question must be equal.

--extra-scenarios adds kills during SaveSession (a snapshot then loads equal to
its source, or is absent or reported damaged, never half), DeleteDocument (once
it returned, the document has no live entry) and DeleteSession (once it
returned, the session is gone and its name can be created again), and kills
while a restarted server is still starting.

    PYTHONPATH=build/python /usr/bin/python3 tools/crash_test.py --kills 100 --extra-scenarios

The RNG seed fixes the documents, chunk sizes and kill points; when exactly a
kill lands depends on the machine's speed, so two runs differ in detail.
Exit status 0 only when nothing was lost, nothing mismatched and no call failed
while the server was up. The data directory and the server's log
(server.log, every start appended) stay in --workdir, or in the temp folder
when the run failed. tools/crash_common.py holds the documents, the server
process and the session fingerprints; tools/crash_scenarios.py the extra
scenarios. tests/server/crash runs a short configuration under ctest.
"""

from __future__ import annotations

import argparse
import queue
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import grpc

from crash_common import (REPO, RETRY_CODES, RPC_ERRORS, SCORE_CONTEXT, SCORE_CONTINUATION,
                          Connection, Document, Round, ServerProcess, code_of, describe,
                          differences, fingerprint, fotserve, log_uniform, make_document,
                          one_shot, retry)
from crash_scenarios import (DeleteDocumentKill, DeleteSessionKill, SaveKill, Scenario,
                             SnapshotSource)
from fotserve._proto import fot_pb2 as pb  # after crash_common, which finds fotserve


# ---------------------------------------------------------------------------
# Configuration


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=str(REPO / "build" / "fot-server"),
                   help="the fot-server binary (default: build/fot-server)")
    p.add_argument("--model", default=str(REPO / "models" / "fot-dict"),
                   help="the model folder (default: models/fot-dict)")
    p.add_argument("--kills", type=int, default=100, help="SIGKILLs before the run finishes")
    p.add_argument("--seed", type=int, default=1,
                   help="fixes documents, chunk sizes, kill points and scenarios")
    p.add_argument("--extra-scenarios", action="store_true",
                   help="also kill during SaveSession, DeleteDocument, DeleteSession and startup")
    p.add_argument("--workdir", help="data directory and server log go here (default: a temp "
                   "folder, removed after a clean run)")
    p.add_argument("--verbose", action="store_true",
                   help="print each kill, reopen and problem as it happens")
    p.add_argument("--sessions", type=int, default=4, help="concurrent ingest streams")
    p.add_argument("--documents", type=int, default=3,
                   help="documents of the first session (the others get 1 or 2)")
    p.add_argument("--doc-kb", default="20:60", help="document size range MIN:MAX in kB")
    p.add_argument("--chunk-bytes", default="200:4000", help="chunk size range MIN:MAX")
    p.add_argument("--query-threads", type=int, default=2,
                   help="threads running Generate, Score and MemoryStats meanwhile")
    p.add_argument("--server-arg", action="append", default=[], metavar="FLAG",
                   help="an extra fot-server flag, e.g. --server-arg=--checkpoint_entries=4096 "
                   "(repeatable)")
    args = p.parse_args(argv)
    args.doc_kb = _range(p, args.doc_kb, "--doc-kb")
    args.chunk_bytes = _range(p, args.chunk_bytes, "--chunk-bytes")
    if args.kills < 0 or args.sessions < 1 or args.documents < 1:
        p.error("--kills must be >= 0, --sessions and --documents >= 1")
    return args


def _range(p: argparse.ArgumentParser, text: str, flag: str) -> tuple:
    try:
        low, high = (float(x) for x in text.split(":"))
    except ValueError:
        p.error(f"{flag} takes MIN:MAX")
    if not 0 < low <= high:
        p.error(f"{flag}: need 0 < MIN <= MAX")
    return low, high


# Session options cycle through these, so that the kills meet exact and kNN
# reads, an approximate index (IVF, trained and retrained as memory grows) and
# both attentions; every session is compared with a one-shot session of the
# same options. (Not HNSW: its ef_search of 1024 makes every ingest window's
# kNN search slow, ~100 s for 10k tokens here.)
SESSION_OPTIONS = [{}, {"retrieval": "knn:16"}, {"attention": "lambda"},
                   {"retrieval": "knn:16", "index": "ivf"}]


@dataclass
class SessionPlan:
    name: str
    options: Dict[str, Any]
    documents: List[Document]


def make_plans(args: argparse.Namespace, rng: random.Random) -> List[SessionPlan]:
    plans = []
    for i in range(args.sessions):
        count = args.documents if i == 0 else rng.randint(1, 2)
        docs = [make_document(rng, f"s{i}-doc{j}", int(rng.uniform(*args.doc_kb) * 1000))
                for j in range(count)]
        plans.append(SessionPlan(f"s{i}", SESSION_OPTIONS[i % len(SESSION_OPTIONS)], docs))
    return plans


# ---------------------------------------------------------------------------
# The ledger: what the server acknowledged, checked against what it reports.


@dataclass
class DocRecord:
    resume_offset: int = 0
    document_tokens: int = 0
    complete: bool = False
    acknowledged: bool = False  # some acknowledgement of this document arrived


@dataclass
class SessionRecord:
    plan: SessionPlan
    stream_tokens: int = 0
    committed_tokens: int = 0
    docs: Dict[str, DocRecord] = field(default_factory=dict)
    broken: bool = False  # the server lost what it cannot be resumed past

    def next_document(self) -> Optional[Document]:
        for doc in self.plan.documents:
            if not self.docs[doc.name].complete:
                return doc
        return None


class Ledger:
    """Thread-safe. A loss (an acknowledged count the server no longer
    reports) is counted once: the record then drops to what the server
    reports, so the stream resends from there and later checks measure from
    the server's new state."""

    def __init__(self, plans: List[SessionPlan], verbose: bool):
        self.lock = threading.Condition()  # over an RLock: methods nest
        self.sessions = {p.name: SessionRecord(p, docs={d.name: DocRecord() for d in p.documents})
                         for p in plans}
        self.verbose = verbose
        self.kill = 0  # kills so far, for the reports
        self.progress = 0  # bytes newly acknowledged since the round began
        self.acks = 0
        self.tokens_checked = 0
        self.problems: Dict[str, List[str]] = {"lost": [], "mismatch": [], "unexpected": []}
        self.lost_fields: Dict[str, int] = {}  # acknowledged counts taken back, by field
        self.start = time.monotonic()

    def note(self, text: str) -> None:
        if self.verbose:
            print(f"[{time.monotonic() - self.start:8.2f}] {text}", flush=True)

    def problem(self, kind: str, text: str) -> None:
        """kind: lost (an acknowledged count or operation undone), mismatch
        (state that differs from what it must be) or unexpected (a call that
        failed while the server was up)."""
        with self.lock:
            self.problems[kind].append(f"kill {self.kill}: {text}")
        self.note(f"{kind.upper()}: {text}")

    def acknowledged(self, session: str, document: str, ack: Any, where: str) -> None:
        """An IngestResponse: it may not report less than any before it; then
        its counts are the new promise."""
        with self.lock:
            self.acks += 1
            d = self.sessions[session].docs[document]
            gained = max(ack.resume_offset - d.resume_offset, 0)
            seen = Seen(ack.resume_offset, ack.document_tokens, ack.complete)
            self._document(session, document, seen, where, promise=True)
            self._session(session, ack.stream_tokens, ack.committed_tokens, where, promise=True)
            d.acknowledged = True
            self.progress += gained
            self.lock.notify_all()

    def check_document(self, session: str, document: str, seen: "Seen", where: str) -> None:
        """What the server reports of a document (GetSession) after a restart."""
        with self.lock:
            self.tokens_checked += self.sessions[session].docs[document].document_tokens
            self._document(session, document, seen, where, promise=False)

    def check_session(self, session: str, stream_tokens: int, committed_tokens: int,
                      where: str) -> None:
        with self.lock:
            self._session(session, stream_tokens, committed_tokens, where, promise=False)

    def _document(self, session: str, document: str, seen: "Seen", where: str,
                  promise: bool) -> None:
        d = self.sessions[session].docs[document]
        what = f"{session}/{document} {where}"
        self._compare(d, "resume_offset", seen.resume_offset, what, promise)
        self._compare(d, "document_tokens", seen.document_tokens, what, promise)
        self._compare(d, "complete", seen.complete, what, promise)

    def _session(self, session: str, stream_tokens: int, committed_tokens: int, where: str,
                 promise: bool) -> None:
        s = self.sessions[session]
        self._compare(s, "stream_tokens", stream_tokens, f"{session} {where}", promise)
        self._compare(s, "committed_tokens", committed_tokens, f"{session} {where}", promise)

    def _compare(self, record: Any, name: str, value: Any, what: str, promise: bool) -> None:
        acknowledged = getattr(record, name)
        if value < acknowledged:
            self.problem("lost", f"{what}: {name} {value} < acknowledged {acknowledged}")
            self.lost_fields[name] = self.lost_fields.get(name, 0) + 1
            setattr(record, name, value)
        elif promise:
            setattr(record, name, value)

    def forget_session(self, session: str) -> None:
        """The server lost the whole session: start it over."""
        with self.lock:
            s = self.sessions[session]
            s.stream_tokens = s.committed_tokens = 0
            s.docs = {d.name: DocRecord() for d in s.plan.documents}

    def reset_progress(self) -> None:
        with self.lock:
            self.progress = 0


@dataclass
class Seen:
    """A document's durable counts as the server reports them."""
    resume_offset: int
    document_tokens: int
    complete: bool


# ---------------------------------------------------------------------------
# Ingest streams


class IngestStream:
    """One Ingest call in lockstep: each request waits for its acknowledgement,
    so every acknowledgement is matched to the chunk it answers."""

    def __init__(self, stub: Any, request: Any, timeout: float = 600):
        self._requests: "queue.Queue[Any]" = queue.Queue()
        self._requests.put(request)
        self._responses = stub.Ingest(self._feed(), timeout=timeout)

    def _feed(self):
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def next_ack(self) -> Any:
        try:
            return next(self._responses)
        except StopIteration:
            raise RuntimeError("the server ended the stream without acknowledging") from None

    def send(self, text: str, end: bool) -> Any:
        self._requests.put(pb.IngestRequest(chunk=pb.IngestChunk(text=text, end_of_document=end)))
        return self.next_ack()

    def close(self) -> None:
        self._requests.put(None)  # ends the request iterator gRPC's thread reads
        self._responses.cancel()


def char_start(data: bytes, offset: int) -> bool:
    return offset >= len(data) or data[offset] & 0xC0 != 0x80


def next_cut(data: bytes, start: int, rng: random.Random, sizes: tuple) -> int:
    """The end of the next chunk: a log-uniform size, backed up to a character start."""
    end = min(start + log_uniform(rng, *sizes), len(data))
    while not char_start(data, end):
        end -= 1
    return end if end > start else min(start + 4, len(data))


class Streamer:
    """The ingest stream of one session across rounds: documents in order,
    each reopened (resume = true) at its last acknowledged offset."""

    def __init__(self, ledger: Ledger, plan: SessionPlan, sizes: tuple, seed: int):
        self.ledger = ledger
        self.plan = plan
        self.sizes = sizes
        self.rng = random.Random(f"{seed}/chunks/{plan.name}")

    def run(self, conn: Connection, round_: Round) -> None:
        """Thread body: ingests until every document is complete or the round ends."""
        record = self.ledger.sessions[self.plan.name]
        try:
            while not record.broken and not round_.killed.is_set():
                doc = record.next_document()
                if doc is None:
                    return
                self.ingest(conn, doc, round_)
        except RPC_ERRORS + (RuntimeError,) as e:
            if not round_.killed.is_set():
                self.ledger.problem("unexpected", f"ingest into {self.plan.name}: {describe(e)}")

    def ingest(self, conn: Connection, doc: Document, round_: Round) -> None:
        stream, offset, ack = self.open(conn, doc, round_)
        try:
            data = doc.data
            if ack.complete:
                return  # its end arrived before the kill, its acknowledgement did not
            if not char_start(data, offset):
                self.ledger.problem("mismatch", f"{self.plan.name}/{doc.name}: resume offset "
                                    f"{offset} splits a character")
                self.ledger.sessions[self.plan.name].broken = True
                return
            while offset < len(data) and not round_.killed.is_set():
                end = next_cut(data, offset, self.rng, self.sizes)
                ack = stream.send(data[offset:end].decode("utf-8"), end == len(data))
                self.ledger.acknowledged(self.plan.name, doc.name, ack, "chunk")
                offset = end
        finally:
            stream.close()

    def open(self, conn: Connection, doc: Document, round_: Round):
        """Opens the document at its last acknowledged offset; the open's own
        acknowledgement must not report less. Returns the stream, the offset
        its first chunk starts at (the server skips what it already holds) and
        the acknowledgement. A server still loading (UNAVAILABLE) or a busy
        session (ABORTED) is retried for up to a minute."""
        deadline = time.monotonic() + 60
        delay = 0.05
        lowered = 0  # reopens below a loss the server reported
        while True:
            offset = self.ledger.sessions[self.plan.name].docs[doc.name].resume_offset
            request = pb.IngestRequest(open=pb.IngestOpen(
                session=self.plan.name, document=doc.name, resume=True, offset=offset,
                add_bos=doc is self.plan.documents[0] and offset == 0))
            stream = IngestStream(conn.stub, request)
            try:
                ack = stream.next_ack()
            except RPC_ERRORS as e:
                stream.close()
                code = code_of(e)
                if (code == grpc.StatusCode.OUT_OF_RANGE and not round_.killed.is_set()
                        and lowered < 3):
                    self.server_holds_less(conn, doc)  # records the loss, lowers the offset
                    lowered += 1
                    continue
                if (code not in RETRY_CODES or round_.killed.is_set()
                        or time.monotonic() > deadline):
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 1.0)
                continue
            self.ledger.acknowledged(self.plan.name, doc.name, ack, "reopen")
            self.ledger.note(f"{self.plan.name}/{doc.name}: reopened at {offset}, the server "
                             f"holds {ack.resume_offset} of {len(doc.data)}")
            if ack.resume_offset < offset and lowered < 3:
                # It holds less but took the offset: the loss is recorded (and
                # the record lowered); reopen where it stands rather than leave a gap.
                stream.close()
                lowered += 1
                continue
            return stream, offset, ack

    def server_holds_less(self, conn: Connection, doc: Document) -> None:
        info = fotserve.Session(conn.client, self.plan.name).info()
        seen = document_seen(info, doc.name)
        self.ledger.check_document(self.plan.name, doc.name, seen, "open OUT_OF_RANGE")


def document_seen(info: Dict[str, Any], document: str) -> Seen:
    """A document's counts in a GetSession answer (all 0 when it is not there)."""
    for d in info.get("documents", []):
        if d["name"] == document:
            return Seen(int(d.get("resume_offset", 0)), int(d.get("tokens", 0)),
                        bool(d.get("complete")))
    return Seen(0, 0, False)


# ---------------------------------------------------------------------------
# Queries beside the ingest: their failures during a kill are expected.


@dataclass
class QueryStats:
    ok: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.failed += 1


def query_loop(conn: Connection, plans: List[SessionPlan], round_: Round, rng: random.Random,
               stats: QueryStats, ledger: Ledger) -> None:
    while not round_.killed.is_set():
        plan = rng.choice(plans)
        session = fotserve.Session(conn.client, plan.name)
        kind = rng.choice(["generate", "score", "stats"])
        try:
            if kind == "generate":
                session.ask(f"?{plan.documents[0].key}=", max_tokens=4, ignore_eos=True)
            elif kind == "score":
                session.score(SCORE_CONTINUATION, context=SCORE_CONTEXT)
            else:
                session.memory.stats()
            stats.count(True)
        except RPC_ERRORS as e:
            stats.count(False)
            if not round_.killed.is_set() and code_of(e) not in RETRY_CODES:
                ledger.problem("unexpected", f"{kind} on {plan.name}: {describe(e)}")
        time.sleep(rng.uniform(0.01, 0.1))


# ---------------------------------------------------------------------------
# Checks after a restart


def verify_sessions(conn: Connection, ledger: Ledger) -> None:
    """Every session whose CreateSession returned exists; every acknowledged
    count is still reported by GetSession."""
    for name, record in ledger.sessions.items():
        session = fotserve.Session(conn.client, name)
        try:
            info = retry(session.info)
        except RPC_ERRORS as e:
            # Gone (NOT_FOUND) or there but unreadable (DATA_LOSS, FAILED_PRECONDITION,
            # ...): either way what it acknowledged is out of reach.
            ledger.problem("lost", f"session {name} is gone or unreadable after the restart: "
                           f"{describe(e)}")
            recreate(conn, ledger, record, unreadable=code_of(e) != grpc.StatusCode.NOT_FOUND)
            continue
        for doc in record.plan.documents:
            if record.docs[doc.name].acknowledged:
                ledger.check_document(name, doc.name, document_seen(info, doc.name),
                                      "after restart")
        ledger.check_session(name, int(info.get("stream_tokens", 0)),
                             int(info.get("committed_tokens", 0)), "after restart")
        mark_if_stuck(ledger, record)


def recreate(conn: Connection, ledger: Ledger, record: SessionRecord, unreadable: bool) -> None:
    """A lost session starts over (its documents from the beginning); an
    unreadable one is deleted first (the server's message says DeleteSession
    removes it)."""
    ledger.forget_session(record.plan.name)
    try:
        if unreadable:
            fotserve.Session(conn.client, record.plan.name).delete()
        conn.client.create_session(record.plan.name, **record.plan.options)
    except RPC_ERRORS as e:
        ledger.problem("mismatch", f"the lost session {record.plan.name} cannot be created "
                       f"again: {describe(e)}")
        record.broken = True


def mark_if_stuck(ledger: Ledger, record: SessionRecord) -> None:
    """A document that lost its end while a later one has data can never be
    finished (only a session's latest document resumes): stop ingesting there."""
    docs = [record.docs[d.name] for d in record.plan.documents]
    for earlier, later in zip(docs, docs[1:]):
        if not earlier.complete and later.acknowledged and later.document_tokens > 0:
            # The loss itself was counted when the check lowered `complete`.
            print(f"{record.plan.name}: a document before the latest is no longer complete; "
                  "the session cannot be resumed, its ingest stops", flush=True)
            record.broken = True
            return


# ---------------------------------------------------------------------------
# The run


@dataclass
class Summary:
    kills: int = 0
    startup_kills: int = 0
    scenario_kills: Dict[str, List[str]] = field(default_factory=dict)
    acks: int = 0
    tokens_checked: int = 0
    sessions_compared: int = 0
    lost: int = 0
    lost_fields: Dict[str, int] = field(default_factory=dict)
    mismatches: int = 0
    unexpected: int = 0
    queries: QueryStats = field(default_factory=QueryStats)
    examples: List[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.mismatches == 0 and self.unexpected == 0


class CrashTest:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.rng = random.Random(args.seed)
        self.plans = make_plans(args, self.rng)
        self.ledger = Ledger(self.plans, args.verbose)
        self.streamers = [Streamer(self.ledger, p, args.chunk_bytes, args.seed) for p in self.plans]
        self.server = ServerProcess(args, workdir / "data", workdir / "server.log")
        self.summary = Summary()
        self.total_bytes = sum(len(d.data) for p in self.plans for d in p.documents)
        self.snapshot_source: Optional[SnapshotSource] = None
        self.op_seconds: Dict[str, float] = {}
        self.conn: Optional[Connection] = None

    # -- server lifetimes --------------------------------------------------

    def start_server(self) -> None:
        self.server.start()
        if self.conn is not None:
            self.conn.close()
        self.conn = Connection(self.server.address)

    def kill_server(self, round_: Round) -> None:
        round_.killed.set()  # first: any failure from here on is the kill's
        exited = self.server.process.poll()
        if exited is not None and round_.number >= 0:  # not a kill while starting
            self.ledger.problem("unexpected", f"fot-server exited by itself (status {exited}) "
                                f"before kill {self.summary.kills + 1}; see {self.server.log_path}")
        self.server.kill()
        self.summary.kills += 1
        self.ledger.kill = self.summary.kills
        self.ledger.note(f"kill {self.summary.kills}")

    def restart(self) -> None:
        """Restarts the server; with extra scenarios, sometimes kills it first
        while it is still starting (recovery must survive a crash too)."""
        if (self.args.extra_scenarios and self.summary.kills < self.args.kills
                and self.rng.random() < 0.1):
            self.server.spawn()
            time.sleep(self.rng.uniform(0, 1.5 * self.server.startup_s))
            self.kill_server(Round(-1))
            self.summary.startup_kills += 1
        self.start_server()

    # -- one round ---------------------------------------------------------

    def run_round(self, round_: Round, kill: bool, scenario: Optional[Scenario] = None) -> None:
        """Ingest and queries until the kill (or, without one, until every
        document is complete); with a scenario, the kill comes during its
        operation."""
        self.ensure_running()
        if scenario is not None and not self.guarded(f"{scenario.name} setup",
                                                     lambda: scenario.setup(self.conn)):
            scenario = None
        self.ledger.reset_progress()
        threads = [threading.Thread(target=s.run, args=(self.conn, round_)) for s in self.streamers]
        for i in range(self.args.query_threads):
            rng = random.Random(f"{self.args.seed}/queries/{round_.number}/{i}")
            threads.append(threading.Thread(target=query_loop, args=(
                self.conn, self.plans, round_, rng, self.summary.queries, self.ledger)))
        for t in threads:
            t.start()
        if kill:
            self.kill_when_due(round_, scenario, threads[:len(self.streamers)])
        else:
            for t in threads[:len(self.streamers)]:
                t.join()
            round_.killed.set()  # stops the queries
        for t in threads:
            t.join()
        if kill:
            self.restart()
            verify_sessions(self.conn, self.ledger)
            if scenario is not None:
                self.guarded(f"{scenario.name} check", lambda: scenario.check(self.conn))
                self.summary.scenario_kills.setdefault(scenario.name, []).append(
                    f"{'returned' if scenario.returned else 'cut'}/{scenario.outcome}")

    def kill_when_due(self, round_: Round, scenario: Optional[Scenario],
                      streams: List[threading.Thread]) -> None:
        if scenario is not None:
            self.kill_around(round_, scenario)
            return
        # Kills spread over the data: each waits for a random share of it to be
        # acknowledged (or for the streams to finish), then a random moment more
        # (a few chunks' time), so that it lands anywhere between two saves.
        due = self.rng.uniform(0.2, 1.8) * self.total_bytes / (self.args.kills + 1)
        delay = self.rng.uniform(0, 0.05)
        deadline = time.monotonic() + 300
        with self.ledger.lock:
            while (self.ledger.progress < due and any(t.is_alive() for t in streams)
                   and time.monotonic() < deadline):
                self.ledger.lock.wait(0.05)
        time.sleep(delay)
        self.kill_server(round_)

    def kill_around(self, round_: Round, scenario: Scenario) -> None:
        """Half the time the kill comes at a random moment of the operation's
        run (as timed unkilled); half the time just after it returned, so
        that both an interrupted and a returned operation are checked."""
        time.sleep(self.rng.uniform(0, 0.3))
        worker = threading.Thread(target=scenario.run, args=(self.conn, round_))
        worker.start()
        if self.rng.random() < 0.5:
            time.sleep(self.rng.uniform(0, 1.5 * self.op_seconds.get(scenario.name, 0.05)))
        else:
            worker.join(timeout=60)
            time.sleep(self.rng.uniform(0, 0.02))
        self.kill_server(round_)
        worker.join()

    def pick_scenario(self, number: int) -> Optional[Scenario]:
        if not self.args.extra_scenarios or number % 3 != 2:
            return None
        kind = (number // 3) % 3
        tag = str(number)
        if kind == 0:
            if self.snapshot_source is None:  # its setup failed (reported)
                return None
            return SaveKill(self.ledger, tag, self.snapshot_source)
        if kind == 1:
            return DeleteDocumentKill(self.ledger, tag, self.rng)
        return DeleteSessionKill(self.ledger, tag, self.rng)

    # -- setup and the end -------------------------------------------------

    def setup(self) -> None:
        self.start_server()
        for plan in self.plans:
            self.conn.client.create_session(plan.name, **plan.options)
        if self.args.extra_scenarios:
            self.calibrate()

    def calibrate(self) -> None:
        """Times each killed operation once, unkilled, so that kills land
        around its run (and checks that each works at all)."""
        def source() -> None:
            self.snapshot_source = SnapshotSource(self.conn, self.rng)
        self.guarded("snapshot source setup", source)
        scenarios = [DeleteDocumentKill(self.ledger, "calibration", self.rng),
                     DeleteSessionKill(self.ledger, "calibration", self.rng)]
        if self.snapshot_source is not None:
            scenarios.insert(0, SaveKill(self.ledger, "calibration", self.snapshot_source))
        for scenario in scenarios:
            self.guarded(f"{scenario.name} calibration", lambda: self.time_unkilled(scenario))
        self.ledger.note(f"operation times: {self.op_seconds}")

    def time_unkilled(self, scenario: Scenario) -> None:
        scenario.setup(self.conn)
        begin = time.monotonic()
        scenario.run(self.conn, Round(-1))
        self.op_seconds[scenario.name] = max(time.monotonic() - begin, 0.005)
        scenario.check(self.conn)

    def compare_with_one_shot(self) -> None:
        for plan in self.plans:
            self.guarded(f"comparing {plan.name} with one-shot", lambda: self.compare(plan))

    def compare(self, plan: SessionPlan) -> None:
        session = fotserve.Session(self.conn.client, plan.name)
        reference = one_shot(self.conn.client, f"ref-{plan.name}", plan.options, plan.documents)
        key = plan.documents[0].key
        want = fingerprint(reference, key)
        for diff in differences(fingerprint(session, key), want):
            self.ledger.problem("mismatch", f"{plan.name} vs one-shot: {diff}")
        self.summary.sessions_compared += 1
        reference.delete()

    def guarded(self, what: str, call: Callable[[], Any]) -> bool:
        """call(); one that fails while no kill is under way is an unexpected
        error: reported, and the run goes on (on a fresh server if it died)."""
        try:
            call()
            return True
        except RPC_ERRORS as e:
            self.ledger.problem("unexpected", f"{what}: {describe(e)}")
            self.ensure_running()
            return False

    def ensure_running(self) -> None:
        exited = self.server.process.poll()
        if exited is not None:
            self.ledger.problem("unexpected", f"fot-server exited by itself (status {exited}); "
                                f"see {self.server.log_path}")
            self.start_server()

    def run(self) -> Summary:
        begin = time.monotonic()
        try:
            self.setup()
            for number in range(self.args.kills):
                if self.summary.kills >= self.args.kills:
                    break  # startup kills count too
                self.run_round(Round(number), kill=True, scenario=self.pick_scenario(number))
            self.run_round(Round(self.args.kills), kill=False)  # every document to its end
            self.run_round(Round(self.args.kills + 1), kill=True)  # are the ends durable?
            self.compare_with_one_shot()
        finally:
            self.server.stop()
            if self.conn is not None:
                self.conn.close()
        return self.summarize(time.monotonic() - begin)

    def summarize(self, seconds: float) -> Summary:
        s = self.summary
        problems = self.ledger.problems
        s.lost, s.mismatches = len(problems["lost"]), len(problems["mismatch"])
        s.lost_fields = dict(self.ledger.lost_fields)
        s.unexpected = len(problems["unexpected"])
        s.acks, s.tokens_checked, s.seconds = self.ledger.acks, self.ledger.tokens_checked, seconds
        s.examples = [f"{kind}: {text}" for kind in ("lost", "mismatch", "unexpected")
                      for text in problems[kind][:10]]
        incomplete = [d.name for p in self.plans for d in p.documents
                      if not self.ledger.sessions[p.name].docs[d.name].complete]
        if incomplete:
            s.mismatches += len(incomplete)
            s.examples.append(f"mismatch: documents never completed: {incomplete}")
        return s


def print_summary(s: Summary, args: argparse.Namespace, workdir: Path) -> None:
    print(f"crash test: seed {args.seed}, {s.seconds:.1f} s, data and server log in {workdir}")
    print(f"  kills: {s.kills} ({s.startup_kills} while starting, "
          f"{sum(len(v) for v in s.scenario_kills.values())} during an operation, "
          "1 after the last document)")
    for name, outcomes in sorted(s.scenario_kills.items()):
        counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
        print(f"    {name}: " + ", ".join(f"{n} {o}" for o, n in counts.items()))
    print(f"  acknowledgements: {s.acks}; acknowledged tokens checked: {s.tokens_checked}")
    print(f"  queries: {s.queries.ok} answered, {s.queries.failed} failed")
    by_field = ", ".join(f"{n} {f}" for f, n in sorted(s.lost_fields.items()))
    taken_back = f" (acknowledged counts taken back: {by_field})" if by_field else ""
    print(f"  lost: {s.lost}{taken_back}")
    print(f"  sessions compared: {s.sessions_compared}; mismatches: {s.mismatches}")
    print(f"  unexpected errors: {s.unexpected}")
    for example in s.examples:
        print(f"    {example}")
    print("PASS" if s.ok else "FAIL")


def run(args: argparse.Namespace) -> Summary:
    """The whole crash test; the workdir stays when something failed or was given."""
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="crash_test."))
    workdir.mkdir(parents=True, exist_ok=True)
    summary = CrashTest(args, workdir).run()
    print_summary(summary, args, workdir)
    if summary.ok and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    return 0 if run(parse_args(argv)).ok else 1


if __name__ == "__main__":
    sys.exit(main())
