"""Dev mode and the simulator: ``mode`` makes the settings and keys of a service that runs with
no config file, ``sandbox`` the stand-in platform its calls go to, ``banner`` what it prints at
start; ``simulator`` signs notifications as Alipay does so that they can be posted to it,
``subscribe`` plays a user answering a subscribe panel, ``listen`` forwards its events to a
local URL. May import everything but ``server.wiring``.
"""
