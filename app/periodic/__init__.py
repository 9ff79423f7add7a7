"""What runs on a schedule: rq-scheduler's process, the clean-up of every package's expired
tokens and the outbox sweep. It sits above the packages whose rows it cleans."""
