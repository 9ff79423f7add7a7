"""A login: its record (the session), its token family and refresh tokens (issue, rotate,
spend, end), the access token (sign, verify, the per-process cache of verified tokens), the
guard of every authenticated endpoint and the caller it reads, refresh, logout and the
person's own list of sessions. Every way in (password today; passkeys and providers later)
starts a login here."""
