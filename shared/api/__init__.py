"""The routes as plain functions: request values and the stores in, an `http.Response` out. The blueprint
in query_http/ is the thin adapter to azure.functions; nothing here imports it."""
