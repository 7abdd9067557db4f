"""The gRPC fixture's client (grpcio, PyPI): every streaming kind on one channel, a call
with gzip-compressed messages, and a NOT_FOUND.

    grpc_client.py GENERATED_DIR ADDRESS:PORT
"""

import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import bookshop_pb2 as pb  # noqa: E402
import bookshop_pb2_grpc as rpc  # noqa: E402

with grpc.insecure_channel(sys.argv[2]) as channel:
    stub = rpc.BookshopStub(channel)
    stub.GetBook(pb.GetBookRequest(id="1"))
    list(stub.ListBooks(pb.ListBooksRequest(limit=2)))
    stub.AddBooks(iter([
        pb.Book(id="3", title="Kindred", author="Octavia E. Butler", year=1979),
        pb.Book(id="4", title="The Lathe of Heaven", author="Ursula K. Le Guin", year=1971),
    ]))
    list(stub.Chat(iter([pb.Note(text="hello"), pb.Note(text="bye")])))
    # gzip: grpcio compresses messages that shrink (the long title), not the tiny reply.
    stub.AddBooks(
        iter([pb.Book(id="5", title="A Long Title " * 40, author="Anonymous", year=2001)]),
        compression=grpc.Compression.Gzip,
    )
    try:
        stub.GetBook(pb.GetBookRequest(id="404"))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
