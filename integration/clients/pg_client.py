# PostgreSQL client for integration/record.sh postgresql: psycopg 3 (PyPI), which speaks the
# extended protocol: unnamed statements with bind parameters, a named prepared statement used
# twice, a pipeline of several statements before one Sync, and an error inside a pipeline.
import sys

import psycopg

host, password = sys.argv[1], sys.argv[2]
with psycopg.connect(host=host, user="shop", password=password, dbname="shop",
                     sslmode="disable", application_name="pg_client.py") as conn:
    cur = conn.cursor()
    cur.execute("SELECT title FROM books WHERE id = %s", (1,))
    cur.fetchall()
    for book in (1, 2):
        cur.execute("SELECT price FROM books WHERE id = %s", (book,), prepare=True)
        cur.fetchall()
    with conn.pipeline():
        cur.execute("UPDATE books SET price = price + %s WHERE id = %s", (1, 2))
        cur.execute("INSERT INTO books VALUES (%s, %s, %s)", (9, "Ivanhoe", 7))
        cur.execute("SELECT count(*) FROM books")
    try:
        with conn.pipeline():
            cur.execute("INSERT INTO books VALUES (%s, %s, %s)", (1, "Duplicate", 1))
            cur.execute("SELECT 1")
    except psycopg.Error:
        conn.rollback()
