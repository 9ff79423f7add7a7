"""What the tests share besides fixtures, one module per purpose: `http` (requests,
assertions, accounts), `mail` (the SMTP server), `services` (PostgreSQL, Redis), `apps` (the
app, its jobs and commands, what it stored), `images` (avatars), `account` (deleting and
exporting one's account, and what is stored of it).

Fixtures live in conftest.py (and the fixture modules it loads); test modules import from
here and never from each other or from conftest.
"""
