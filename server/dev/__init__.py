"""Dev mode and the simulator: ``mode`` makes the settings and keys of a service that runs with
no config file, ``sandbox`` the stand-in platform its calls go to; ``simulator`` signs
notifications as Alipay does so that they can be posted to it, ``subscribe`` plays a user
answering a subscribe panel. (What dev mode prints at start, and ``listen``, live with the
command line in ``server.cli``.) May import everything but ``server.wiring``.
"""
