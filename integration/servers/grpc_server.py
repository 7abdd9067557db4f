"""The gRPC fixture's server (grpcio, PyPI): the Bookshop service of proto/bookshop.proto.

    grpc_server.py GENERATED_DIR ADDRESS:PORT
GENERATED_DIR holds bookshop_pb2*.py made by grpcio-tools (see integration/record.sh grpc).
"""

import sys
from concurrent import futures

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import bookshop_pb2 as pb  # noqa: E402
import bookshop_pb2_grpc as rpc  # noqa: E402

BOOKS = {
    "1": pb.Book(id="1", title="The Dispossessed", author="Ursula K. Le Guin", year=1974),
    "2": pb.Book(id="2", title="Parable of the Sower", author="Octavia E. Butler", year=1993),
}


class Bookshop(rpc.BookshopServicer):
    def GetBook(self, request, context):
        book = BOOKS.get(request.id)
        if book is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no book {request.id}")
        return book

    def ListBooks(self, request, context):
        for book in list(BOOKS.values())[: request.limit or None]:
            yield book

    def AddBooks(self, request_iterator, context):
        n = 0
        for book in request_iterator:
            BOOKS[book.id] = book
            n += 1
        return pb.AddSummary(added=n)

    def Chat(self, request_iterator, context):
        for note in request_iterator:
            yield pb.Note(text=f"re: {note.text}")


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
rpc.add_BookshopServicer_to_server(Bookshop(), server)
server.add_insecure_port(sys.argv[2])
server.start()
server.wait_for_termination()
