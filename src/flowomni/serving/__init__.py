"""Serving: FastAPI WebSocket/HTTP server and the web page."""
