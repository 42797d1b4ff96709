#!/usr/bin/env python3
"""Ingests every .txt file of a folder into one fot-server session, then
answers questions from them (arguments, or one per line on stdin).

    PYTHONPATH=build/python examples/ask_folder.py notes/ "Who chairs the committee?"

Running it again continues where it stopped: documents already complete are
skipped, a document cut by a broken stream resumes from its acknowledged end.
"""

import argparse
import pathlib
import sys

import fotserve


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("questions", nargs="*", help="default: one per line on stdin")
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--session", default="folder")
    parser.add_argument("--retrieval", default="knn:64")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    with fotserve.Client(args.server) as client:
        try:
            session = client.session(args.session)
        except fotserve.NotFoundError:
            session = client.create_session(args.session, retrieval=args.retrieval)
        for path in sorted(args.folder.glob("*.txt")):
            try:
                result = session.ingest(path, progress=True)
                print(f"{path.name}: {result.document_tokens} tokens", file=sys.stderr)
            except fotserve.AlreadyExistsError:
                print(f"{path.name}: already in the session", file=sys.stderr)
        questions = args.questions or [line.strip() for line in sys.stdin if line.strip()]
        for question in questions:
            print(f"Q: {question}")
            print("A:", end="", flush=True)
            for token in session.ask(" " + question, max_tokens=args.max_tokens, stream=True):
                print(token.text, end="", flush=True)
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
