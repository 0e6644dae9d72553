"""Delivery: getting each outbound message to Microsoft once, at the throttle limit.

``limits`` (Microsoft's published limits, as data), ``pacer`` and ``redis_pacer`` (pacing to
them in one process, or across every process on one Redis budget), ``backoff`` (the one retry
rule), ``outbox`` (a delivery key per message and its state: exactly once across retries,
crashes and resumes), ``posting`` (a chat or channel post through the outbox, settled by
reading back when the outcome is ambiguous), ``fanout`` (a bounded pool of senders), ``queue``
(the worker pool's Redis stream), ``owners`` (who holds a lease, and whether it is alive) and
``progress`` (the progress line of a long fan-out).

Door: ``outbox.Outbox``, ``posting``, ``pacer.Pacer``/``redis_pacer.RedisPacer``, ``fanout``,
``queue``. It stands on the store and the engine; it sends nothing itself (the Graph client,
one stage up, calls it), so it never imports ``graph``.
"""
