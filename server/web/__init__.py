"""The HTTP edge every listener shares (the primary and the intake workers): errors rendered
once, as the JSON envelope on ``/v1`` and a bare ``fail`` on the notification routes
(``error_middleware``), strict JSON request bodies (``json_body``), and how connections are
taken: guarded against slow and surplus clients (``connection_guard``), and, for the routes an
app puts on the lane (``lane``: the notifications, the single-key lookup), served on httptools
without aiohttp's request machinery (``first_request``, ``lane_connection``). May import the
foundation modules, ``server.runtime`` and ``server.ops``.
"""
