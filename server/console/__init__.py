"""The operator console at /console: server-rendered pages (Jinja2 templates and the package's
own CSS and script under ``templates/`` and ``static/``) over the same reads and operations the
``/v1`` API uses.

It may import everything up to ``server.api`` (tokens, grants, the ledger, the delivery desk)
and ``storage``; only ``server.wiring`` imports it. Sessions, CSRF and the security headers are
in ``guard`` and ``sessions``; each page has its module; charts are SVG drawn here (``charts``).
"""
