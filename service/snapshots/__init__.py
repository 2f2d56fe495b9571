"""Table snapshots: a restart loads each table's rows and reads only the tail of its topics.

``keeper.py`` wires it together (restore at start-up, snapshots while running and
at shutdown); ``mirror.py`` keeps the Arrow copy snapshots are made from;
``files.py`` is the file format; ``restore.py`` decides how a table starts.
"""
