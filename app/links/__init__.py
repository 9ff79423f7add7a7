"""The tokens of emailed links: activation and password reset, one of each per user at most,
kept as hashes. The flows that send and spend them are signup's (app/signup/); a password
change (app/passwords/) kills a reset link, so both build on this package."""
