"""File formats and codecs: how bytes on disk or on the wire become numbers.

What lives here is read by the training side (``edgewatch fit``) and the
agent alike, so both read a file the same way: :mod:`csv_table` (the CSV
files plants export). Modules here import the standard library and NumPy
only, never ``edgewatch.agent``, ``train``, ``export`` or ``data``, so the
agent may import them.
"""
