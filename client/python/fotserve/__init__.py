"""A Python client for fot-server, the fotserve long-context memory service.

    import fotserve

    with fotserve.Client("127.0.0.1:50051") as client:
        notes = client.create_session("notes", retrieval="knn:64", index="ivf")
        notes.ingest("meeting.txt")
        print(notes.ask("Who chairs the committee?").text)

Errors are FotserveError subclasses that keep the gRPC code and message.
"""

from fotserve.client import (
    AbortedError,
    Answer,
    AlreadyExistsError,
    Client,
    DataLossError,
    FailedPreconditionError,
    FotserveError,
    IngestResult,
    InternalError,
    InvalidArgumentError,
    Memory,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    Retrieved,
    Score,
    Session,
    Token,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = [name for name in dir() if not name.startswith("_")]
