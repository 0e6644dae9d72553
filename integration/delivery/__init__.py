"""Delivery: getting each outbound message to Microsoft once, at the throttle limit.

``limits`` (Microsoft's published limits, as data), ``pacer`` and ``redis_pacer`` (pacing to
them in one process, or across every process on one Redis budget), ``backoff`` (the one retry
rule), ``outbox`` (a delivery key per message and its state: exactly once across retries,
crashes and resumes), ``posting`` (a chat or channel post through the outbox, settled by
reading back when the outcome is ambiguous), ``fanout`` (a bounded pool of senders), ``queue``
(the worker pool's Redis stream), ``owners`` (who holds a lease, and whether it is alive),
``progress`` (the progress line of a long fan-out) and ``webhooks`` (events out to the SOAR
platform on the Standard Webhooks spec, through the outbox; ``webhook_tool``: ``msteams webhook``).

Door: ``outbox.Outbox``, ``posting``, ``pacer.Pacer``/``redis_pacer.RedisPacer``, ``fanout``,
``queue``, ``webhooks.emit``. It stands on the store and the engine; it sends nothing to
Microsoft itself (the Graph client, one stage up, calls it), so it never imports ``graph``; the
one thing it sends is a webhook, to the SOAR platform.
"""
