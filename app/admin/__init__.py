"""User management for moderators and admins: list and find users, (de)activate them, change
their group; always one active admin left."""
