"""What every package stands on: settings, the database, keys derived from SECRET_KEY, log
lines, Redis, the extension instances and migrations. It imports no domain package."""
