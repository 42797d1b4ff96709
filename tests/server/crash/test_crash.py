"""A short run of the crash test (tools/crash_test.py): 10 SIGKILLs of the real
fot-server amid concurrent ingest streams and queries, plus kills during
SaveSession, DeleteDocument, DeleteSession and startup. Nothing acknowledged
may be lost, and every session must end equal to a one-shot ingest of its
documents. The long run is `tools/crash_test.py --kills 100 --extra-scenarios`."""

import crash_test


def test_kills_lose_nothing_acknowledged(fot_server, fot_model, tmp_path):
    args = crash_test.parse_args([
        "--server", fot_server, "--model", fot_model, "--workdir", str(tmp_path),
        "--kills", "10", "--seed", "15", "--extra-scenarios",
        "--sessions", "3", "--documents", "3", "--doc-kb", "4:10",
    ])
    summary = crash_test.run(args)
    details = "\n".join(summary.examples)
    assert summary.kills >= 10
    assert summary.sessions_compared == 3
    assert summary.lost == 0, f"acknowledged data lost:\n{details}"
    assert summary.mismatches == 0, f"state differs from what it must be:\n{details}"
    assert summary.unexpected == 0, f"calls failed while the server was up:\n{details}"
