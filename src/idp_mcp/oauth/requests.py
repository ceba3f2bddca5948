"""authlib request objects built from already-read HTTP data, so authlib's sync code can run in a thread."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request


class MultiDictPayload(OAuth2Payload):  # type: ignore[misc]
    """Parameters as ``name -> [values]``; ``data`` shows the first value, ``datalist`` all of them."""

    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values
        self._data = {key: items[0] for key, items in values.items() if items}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return defaultdict(list, self._values)


class PlainOAuth2Request(OAuth2Request):  # type: ignore[misc]
    def __init__(
        self,
        method: str,
        uri: str,
        headers: dict[str, str],
        query: dict[str, list[str]],
        form: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._query = {key: items[0] for key, items in query.items() if items}
        self._form = {key: items[0] for key, items in (form or {}).items() if items}
        # Authorization requests carry their parameters in the query; token-style requests in the body only.
        self.payload = MultiDictPayload(dict(query) if method == "GET" else dict(form or {}))
        # Filled in by our grants as the request is validated.
        self.resource: str | None = None
        self.extra: dict[str, Any] = {}

    @property
    def args(self) -> dict[str, str]:
        return self._query

    @property
    def form(self) -> dict[str, str]:
        return self._form
