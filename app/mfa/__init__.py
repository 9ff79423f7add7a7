"""Two-factor sign-in: a TOTP authenticator app and recovery codes, and the one second step
every way in (password login, later social sign-in) hands its user to before a login
starts."""
