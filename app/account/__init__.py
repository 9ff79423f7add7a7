"""The signed-in person's own account (self-service): who am I, the profile, the avatar.

Its routes need the guard (app/sessions/), which reads identities (app/identity/), so they
live above both; the user, group and profile tables stay identity's."""
