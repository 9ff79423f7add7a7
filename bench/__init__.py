"""The load benchmark of the accounts service: `make bench`; see bench/README.md."""
