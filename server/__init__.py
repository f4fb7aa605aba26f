from server.app import build_app

__all__ = ["build_app"]
