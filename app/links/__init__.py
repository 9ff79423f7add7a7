"""The tokens of emailed links: activation, password reset and email change, one of each per
user at most, kept as hashes. The flows that send and spend them are signup's (app/signup/);
a password change (app/passwords/) kills a reset link and a pending email change, so both
build on this package."""
