"""Social sign-in with any OpenID Connect provider: a way in beside the password."""
