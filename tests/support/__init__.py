"""Helpers shared by the test suites: databases, a live server, a browser that signs in and consents."""
