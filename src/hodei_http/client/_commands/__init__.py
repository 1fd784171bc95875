"""The client commands of ``hodei``: ``submit``, ``pipelines``, ``jobs``, ``logs``, ``workers``.

Each is a module with ``HELP`` and ``command(parser)``, named in the ``hodei.commands`` entry
point group. They import only the standard library when the ``hodei`` command builds its
parser; the client (httpx) and trio come in when one of them runs.
"""
