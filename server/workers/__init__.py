"""Worker processes beside the primary: intake workers (``intake_pool`` supervises them,
``intake_process`` is their entry point) verify notifications on more cores and relay them
(``relay``) to the one process that writes the store; call workers (``call_pool``,
``call_process``) make the classic gateway's calls. ``supervision`` and ``bootstrap`` are what
both kinds share, ``wire`` is the frame format they speak. The entry points build their own
small applications and never import ``server.wiring``. May import every capability below it.
"""
