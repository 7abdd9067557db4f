# MySQL/MariaDB client for integration/record.sh mysql: mysql-connector-python (PyPI, pure
# Python) with server-side prepared statements (COM_STMT_PREPARE/EXECUTE/CLOSE), a ping, a
# schema change (COM_INIT_DB) and an error.
import sys

import mysql.connector

host, password = sys.argv[1], sys.argv[2]
conn = mysql.connector.connect(host=host, user="shop", password=password, database="shop",
                               use_pure=True, ssl_disabled=True)
cur = conn.cursor(prepared=True)
for book in (1, 2):
    cur.execute("SELECT title FROM books WHERE id = %s", (book,))
    cur.fetchall()
cur.execute("UPDATE books SET title = %s WHERE id = %s", ("Dune Messiah", 1))
conn.commit()
cur.close()
conn.ping()
conn.cmd_init_db("shop")
plain = conn.cursor()
try:
    plain.execute("SELECT * FROM missing")
except mysql.connector.Error:
    pass
conn.close()
