# Wharf: an OCI container image registry. Runs `wharf serve` as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY storage ./storage
COPY auth ./auth
COPY replicator ./replicator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN groupadd --system --gid 10001 wharf \
 && useradd --system --uid 10001 --gid wharf --home-dir /var/lib/wharf --shell /usr/sbin/nologin wharf \
 && mkdir -p /var/lib/wharf /etc/wharf \
 && chown wharf:wharf /var/lib/wharf
COPY deploy/config.yml /etc/wharf/config.yml
USER wharf:wharf
VOLUME ["/var/lib/wharf"]
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/healthz').status == 200 else 1)"
ENTRYPOINT ["wharf"]
CMD ["serve", "/etc/wharf/config.yml"]
