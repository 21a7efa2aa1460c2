from tests.fake_systems import OK as SYSTEM  # noqa: F401
