"""The command line: ``subgate`` (and ``python run.py``), one module per command group.

``main`` builds the parser from each group's ``add_commands`` and runs the chosen command;
``service`` runs and migrates the service, ``simulate`` signs notifications as Alipay does,
``listen`` forwards a running Subgate's events to a local URL, and ``consents``, ``messages``
and ``notifications`` ask a running Subgate over its ``/v1`` API (``client``, ``feed``) and
print tables for people or JSON for scripts (``output``). It sits above every other package
and imports what it runs; nothing imports it but ``run.py``.
"""
