"""The extra kill scenarios of tools/crash_test.py: SaveSession, DeleteDocument
and DeleteSession, each killed at a random moment of its run, and what must
hold after the restart (DESIGN.md §2: a returned operation is durable; an
interrupted one is all or nothing)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import fotserve
from crash_common import (RPC_ERRORS, Connection, Round, code_of, describe, differences,
                          fingerprint, make_document, one_shot, retry)

if TYPE_CHECKING:  # the ledger lives in the harness, which imports this module
    from crash_test import Ledger


# ---------------------------------------------------------------------------
# Extra scenarios: one operation killed at a random moment of its run.


class Scenario:
    """setup() before the round, operation() in a thread while the kill comes,
    check() after the restart. `returned` is whether the operation returned OK
    before the server died (then its effect is promised)."""

    name = ""

    def __init__(self, ledger: Ledger, tag: str):
        self.ledger = ledger
        self.tag = tag
        self.returned = False
        self.outcome = ""

    def setup(self, conn: Connection) -> None:
        pass

    def operation(self, conn: Connection) -> None:
        raise NotImplementedError

    def check(self, conn: Connection) -> None:
        raise NotImplementedError

    def run(self, conn: Connection, round_: Round) -> None:
        try:
            # A session still loading after a restart answers UNAVAILABLE before
            # the operation starts: wait that out (not once the kill came).
            retry(lambda: self.operation(conn), round_.killed)
            self.returned = True
        except RPC_ERRORS as e:
            if not round_.killed.is_set():
                self.ledger.problem("unexpected", f"{self.name} {self.tag}: {describe(e)}")


class SnapshotSource:
    """A session nothing changes after setup: snapshots of it must load equal
    to its fingerprint (and it must itself stay equal across restarts)."""

    def __init__(self, conn: Connection, rng: random.Random):
        self.doc = make_document(rng, "snap-doc", 12000)
        self.session = one_shot(conn.client, "snapsrc", {}, [self.doc])
        self.expected = fingerprint(self.session, self.doc.key)


class SaveKill(Scenario):
    name = "SaveSession"

    def __init__(self, ledger: Ledger, tag: str, source: SnapshotSource):
        super().__init__(ledger, tag)
        self.source = source
        self.snapshot = f"snap-{tag}"

    def operation(self, conn: Connection) -> None:
        fotserve.Session(conn.client, "snapsrc").save(self.snapshot)

    def check(self, conn: Connection) -> None:
        source = fotserve.Session(conn.client, "snapsrc")
        got = retry(lambda: fingerprint(source, self.source.doc.key))
        for diff in differences(got, self.source.expected):
            self.ledger.problem("mismatch", f"snapsrc changed across the restart: {diff}")
        try:
            loaded = retry(lambda: conn.client.load_session(self.snapshot, f"ld-{self.tag}"))
        except fotserve.NotFoundError:
            self.outcome = "absent"
        except RPC_ERRORS as e:
            self.outcome = f"reported ({code_of(e).name})"
        else:
            self.outcome = "loaded"
            got = fingerprint(loaded, self.source.doc.key)
            for diff in differences(got, self.source.expected):
                self.ledger.problem("mismatch", f"snapshot {self.snapshot} is half: {diff}")
            loaded.delete()
        if self.returned and self.outcome != "loaded":
            self.ledger.problem("lost", f"SaveSession {self.snapshot} returned, but after the "
                                f"restart the snapshot is {self.outcome}")


class DeleteDocumentKill(Scenario):
    name = "DeleteDocument"

    def __init__(self, ledger: Ledger, tag: str, rng: random.Random):
        super().__init__(ledger, tag)
        self.session_name = f"dd-{tag}"
        self.docs = [make_document(rng, "victim", 6000), make_document(rng, "keeper", 3000)]

    def setup(self, conn: Connection) -> None:
        session = one_shot(conn.client, self.session_name, {}, self.docs)
        self.expected_tokens = {d["name"]: int(d["tokens"]) for d in session.info()["documents"]}

    def operation(self, conn: Connection) -> None:
        fotserve.Session(conn.client, self.session_name).delete_document("victim")

    def check(self, conn: Connection) -> None:
        session = fotserve.Session(conn.client, self.session_name)
        try:
            info = retry(session.info)
        except fotserve.NotFoundError:
            self.ledger.problem("lost", f"session {self.session_name} is gone")
            return
        docs = {d["name"]: d for d in info.get("documents", [])}
        for name, tokens in self.expected_tokens.items():
            if name not in docs or int(docs[name].get("tokens", 0)) != tokens:
                self.ledger.problem("lost", f"{self.session_name}/{name}: {docs.get(name)}, "
                                    f"acknowledged {tokens} tokens")
        flagged = bool(docs.get("victim", {}).get("deleted"))
        live = set(session.memory.stats().get("documents", []))
        found = {r.document for r in session.memory.search(f"?{self.docs[0].key}=", top=256)}
        visible = "victim" in live or "victim" in found
        self.outcome = "deleted" if flagged else "kept"
        if self.returned and (not flagged or visible):
            self.ledger.problem("mismatch", f"DeleteDocument returned, yet victim is flagged "
                                f"deleted={flagged}, live in stats={'victim' in live}, "
                                f"found by search={'victim' in found}")
        elif flagged == visible:  # deleted but still retrievable, or hidden but not deleted
            self.ledger.problem("mismatch", f"victim half deleted: flagged deleted={flagged}, "
                                f"live in stats={'victim' in live}, in search={'victim' in found}")
        if "keeper" not in live:
            self.ledger.problem("mismatch", f"{self.session_name}: keeper has no live entries")
        session.delete()


class DeleteSessionKill(Scenario):
    name = "DeleteSession"

    def __init__(self, ledger: Ledger, tag: str, rng: random.Random):
        super().__init__(ledger, tag)
        self.session_name = f"ds-{tag}"
        self.doc = make_document(rng, "only", 4000)

    def setup(self, conn: Connection) -> None:
        session = one_shot(conn.client, self.session_name, {}, [self.doc])
        self.expected = fingerprint(session, self.doc.key)

    def operation(self, conn: Connection) -> None:
        fotserve.Session(conn.client, self.session_name).delete()

    def check(self, conn: Connection) -> None:
        session = fotserve.Session(conn.client, self.session_name)
        try:
            retry(session.info)
        except fotserve.NotFoundError:
            self.outcome = "gone"
        else:
            self.outcome = "kept"
            if self.returned:
                self.ledger.problem("mismatch", f"DeleteSession {self.session_name} returned, "
                                    "yet the session is back after the restart")
            for diff in differences(fingerprint(session, self.doc.key), self.expected):
                self.ledger.problem("mismatch", f"{self.session_name} survived half: {diff}")
            session.delete()
        listed = self.session_name in retry(conn.client.sessions)
        if listed:
            self.ledger.problem("mismatch", f"{self.session_name} still listed after deletion")
        try:
            retry(lambda: conn.client.create_session(self.session_name)).delete()
        except RPC_ERRORS as e:
            self.ledger.problem("mismatch", f"the name {self.session_name} cannot be created "
                                f"again: {describe(e)}")
