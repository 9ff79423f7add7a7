"""The password, the first way in: hashing, the strength rule (a bounded zxcvbn judge),
logging in with it, changing it, and the brakes on guessing it."""
