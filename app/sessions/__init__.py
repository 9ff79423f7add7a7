"""A login: its token family and refresh tokens (issue, rotate, spend, end), the access token
(sign, verify, the per-process cache of verified tokens), the guard of every authenticated
endpoint and the caller it reads, refresh and logout. Every way in (password today; passkeys
and providers later) starts a login here."""
