"""The SQL both backends speak, written once.

Here live the statements the SQLite and PostgreSQL stores share (``events``, ``ledger``,
``notifications``, ``outbox``: neutral text with ``?`` placeholders), the ``Dialect`` that
renders them for one database at import time (``dialect``, ``statements``), the row encoders and
decoders of each table (``*_rows``), and the reads every store answers alike (``reads``). What
only one database can say (SQLite's bulk inserts, PostgreSQL's row locks and ``SKIP LOCKED``)
stays in its backend. Modules here may import the standard library and ``storage``'s shared
modules (``models``, ``ledger``, ``sending``, ``timecodec``, ``jsontext``, ``errors``); never a
database driver, a backend, the server or the verifier.
"""
