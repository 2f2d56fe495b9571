"""The HTTP side: one Tornado port for the websocket, pages, API, metrics and health."""
