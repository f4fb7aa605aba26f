"""The process Subgate runs in: its clock, its event loop (uvloop where available), its garbage
collector settings and the redaction of what aiohttp logs. Imports only the foundation modules.
"""
