"""GraphQL requests in every form tapwire reads, on one connection per HTTP version.

    graphql_client.py URL 1.1|2

HTTP/2 uses prior knowledge (httpx with h2, PyPI), so all requests share one connection and
one HPACK context, as real clients do; a few requests go concurrently (interleaved streams).
The mutation's `token` variable is a known test value: tests check it never appears in any
output (variables are not copied into events).
"""

import sys
from concurrent.futures import ThreadPoolExecutor

import httpx

url, version = sys.argv[1], sys.argv[2]
JSON = {"content-type": "application/json"}
REQUESTS = [
    ("POST", JSON, {"json": {"query": "query AllBooks { books { id title } }", "operationName": "AllBooks"}}),
    ("POST", JSON, {"json": {
        "query": "query A { books { id } } query B($id: ID!) { book(id: $id) { title } }",
        "operationName": "B", "variables": {"id": "2"}}}),
    ("POST", JSON, {"json": {
        "query": "mutation AddBook($t: String!, $a: String!, $k: String!) "
                 "{ addBook(title: $t, author: $a, token: $k) { id } }",
        "variables": {"t": "Dune", "a": "Frank Herbert", "k": "tapwire-graphql-token-5d2b"}}}),
    ("POST", JSON, {"json": {"query": "{ broken }"}}),
    ("POST", JSON, {"json": [{"query": "query First { books { id } }"},
                             {"query": "query Second { broken }"}]}),
    ("POST", JSON, {"json": {"extensions": {"persistedQuery": {
        "version": 1,
        "sha256Hash": "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38"}}}}),
    ("GET", {}, {"params": {"query": "query ByGet { books { title } }"}}),
    ("POST", {"content-type": "application/graphql"}, {"content": "{ books { id } }"}),
    ("POST", JSON, {"content": '{"query":"query Broken { books { id "}'}),
    ("POST", JSON, {"json": {"name": "not graphql"}}),
]

h2 = version == "2"
with httpx.Client(http1=not h2, http2=h2, timeout=10) as client:
    for method, headers, kw in REQUESTS:
        if h2 and headers.get("content-type") == "application/graphql":
            # Strawberry answers 415 before reading the body, and Hypercorn's HTTP/2 server
            # then fails on the body's DATA frame for the closed stream (KeyError in h2.py),
            # dropping the connection: HTTP/1.1 only.
            continue
        client.request(method, url, headers=headers, **kw)
    if h2:
        # Concurrent requests: interleaved streams on the one connection.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(
                lambda i: client.post(url, headers=JSON, json={
                    "query": f"query Parallel{i} {{ books {{ id }} }}"}),
                range(4)))
