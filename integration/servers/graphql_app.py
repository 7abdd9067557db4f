"""A small GraphQL service for fixture recordings: Strawberry (PyPI) served by Hypercorn.

Queries, a mutation, a field that fails (a GraphQL error on HTTP 200), and query batching.
Run: hypercorn integration.servers.graphql_app:app (see integration/record.sh graphql).
"""

import strawberry
from strawberry.asgi import GraphQL
from strawberry.schema.config import StrawberryConfig


@strawberry.type
class Book:
    id: strawberry.ID
    title: str
    author: str


BOOKS = [
    Book(id="1", title="The Left Hand of Darkness", author="Ursula K. Le Guin"),
    Book(id="2", title="Kindred", author="Octavia E. Butler"),
]


@strawberry.type
class Query:
    @strawberry.field
    def books(self) -> list[Book]:
        return BOOKS

    @strawberry.field
    def book(self, id: strawberry.ID) -> Book | None:
        return next((b for b in BOOKS if b.id == id), None)

    @strawberry.field
    def broken(self) -> str:
        raise ValueError("this field always fails")


@strawberry.type
class Mutation:
    @strawberry.mutation
    def add_book(self, title: str, author: str, token: str) -> Book:
        book = Book(id=str(len(BOOKS) + 1), title=title, author=author)
        BOOKS.append(book)
        return book


schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    config=StrawberryConfig(batching_config={"max_operations": 10}),
)
app = GraphQL(schema)
