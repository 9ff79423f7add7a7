"""Email: the outbox (a message recorded with the change that promises it), the RQ queue and
its worker, delivery over SMTP (or printed), the message templates, the per-account quota."""
