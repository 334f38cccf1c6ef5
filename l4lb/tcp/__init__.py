"""
The TCP relay: frontends that accept connections and sessions that relay
them to a server.
"""
