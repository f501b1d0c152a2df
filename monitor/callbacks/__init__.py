"""TRTC recording callbacks (docs/callbacks.md): a fast path beside polling, never instead of it.

The order of work is fixed by what may be trusted when, one module each:

1. ``signature``: the ``Sign`` header over the exact raw bytes, before any parsing, so that
   nothing an unsigned sender writes is ever interpreted;
2. ``parse``: the body read tolerantly but with a known type for every field acted upon;
3. the age check (in the HTTP handler, which knows the configured ``max_age``): the signature
   covers no time, so a captured callback replayed later is refused by its ``CallbackTs``;
4. ``dedupe``: a repeat of a delivery already applied is acknowledged and changes nothing;
5. ``effects``: 301 registers, 302 records an exit at once, 310-312 leave facts on the task.

``monitor.http.callbacks`` is the thin handler that runs these steps in order.
"""
