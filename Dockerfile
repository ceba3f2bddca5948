# idp-mcp: slim, non-root, data on a volume.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY instructions ./instructions
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin idp \
    && mkdir -p /data && chown idp /data
COPY --from=build /install /usr/local
USER idp
ENV IDP_MCP_DATA_DIR=/data \
    IDP_MCP_PUBLIC_URL=http://127.0.0.1:8000 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# Behind a TLS-terminating proxy, set IDP_MCP_PUBLIC_URL to the public https origin and pass
# --forwarded-allow-ips with the proxy's address.
CMD ["idp-mcp", "serve", "--host", "0.0.0.0", "--port", "8000"]
