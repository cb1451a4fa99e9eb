"""Version string written into infotexts (`Version: ...`).

Infotext readers (ours and A1111's) switch on back-compat rewrites for versions before 1.6 / 1.8,
so we write the A1111 behaviour level this project implements, with our own suffix after it."""
A1111_COMPAT_LEVEL = "v1.10.1"
PROJECT_VERSION = "0.1.0"
INFOTEXT_VERSION = A1111_COMPAT_LEVEL
