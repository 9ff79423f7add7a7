"""Fixtures the security tests share with the functional ones."""

from tests.test_avatar import uploader  # noqa: F401 - the avatar tests' logged-in uploader
