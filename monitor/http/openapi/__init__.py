"""OpenAPI 3.1 description of the task API, built for the running configuration.

The document is the contract: whatever it allows, the daemon takes, and whatever it forbids,
the daemon refuses with a JSON error it documents. It is built per request from the running
configuration, so the accounts a task may name are the ones configured now.
"""

from monitor.http.openapi.document import openapi_document

__all__ = ["openapi_document"]
