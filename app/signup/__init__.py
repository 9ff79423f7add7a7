"""The emailed-link flows and their pages: registration and activation, a new activation
link, the forgotten password and its reset."""
