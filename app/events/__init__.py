"""Security events: what happened to an account, when, from where and by whom. Every package
records through `app.events.service.record_event`, in the transaction of the change it records;
people read their own (GET /auth/me/events), admins anyone's."""
