"""Who a person is: the user, its group and its profile (tables and lookups), the user object
every answer shows, and where avatars are kept and served."""
