"""File formats and codecs: how bytes on disk or on the wire become numbers, and back.

What lives here is read by the training side (``edgewatch fit``) and the
agent alike, so both read a file the same way:

* :mod:`csv_table`: the CSV files plants export, read as a table (the reading rules: :mod:`csv_sniff` ties
  together :mod:`csv_header`, :mod:`csv_cells`, :mod:`csv_marks`, :mod:`csv_time_column`,
  :mod:`csv_tag_columns` and :mod:`csv_rows` in one :mod:`csv_layout`; :mod:`csv_files` opens the bytes);
* :mod:`csv_long`: a historian's long export (one row per tag and time) as one column per tag;
* :mod:`csv_times`: the times written in them (formats, day or month first, clock changes);
* :mod:`protobuf`: the protobuf wire primitives the hand-written codecs share;
* :mod:`onnx_read`: an ONNX file's metadata and graph spans without the ``onnx`` package (signatures);
* :mod:`onnx_write`: small ONNX graphs as bytes without torch or ``onnx`` (the NumPy-fitted families).

Modules here import the standard library, NumPy and :mod:`edgewatch.errors`
only, never another edgewatch package, so everything above may import them.
"""
